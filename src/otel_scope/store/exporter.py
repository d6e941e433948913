"""The OTel span exporter that writes into the local store (``OTEL_TRACES_EXPORTER=otel_scope``).

The SDK builds exporters from the ``opentelemetry_traces_exporter`` entry point with no arguments,
so this one reads its path and retention from the settings. It runs inside the user's program:
it must never raise into the SDK and never flood the log, so failures become ``FAILURE`` results
and a single warning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_scope import _forksafe
from otel_scope.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from otel_scope.store.spanstore import SpanStore

_logger = logging.getLogger(__name__)

# Retention runs on the first export of each process and then every PRUNE_EVERY exports: often
# enough to bound the file, rare enough that its queries never show up in the app's latency.
PRUNE_EVERY = 50


class LocalStoreSpanExporter(SpanExporter):
    """Exports spans into the SQLite store at ``path`` (default: ``Settings().store_path``).

    The file (and its directory) is created on the first export, not at construction, so a
    configured-but-unused exporter leaves no trace on disk.
    """

    #: Tells the export pipeline to give this exporter the store's queue and batch sizes.
    local_store = True

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        max_age_days: float | None = None,
        max_mb: float | None = None,
    ) -> None:
        try:
            settings = load_settings()
        except ConfigError:
            # The distro reports configuration errors; the exporter just keeps working.
            settings = Settings()
        self.path = os.fspath(path) if path is not None else settings.store_path
        self.max_age_days = settings.store_max_age_days if max_age_days is None else max_age_days
        self.max_mb = settings.store_max_mb if max_mb is None else max_mb
        self._store: SpanStore | None = None
        self._lock = _forksafe.lock()
        self._exports = 0
        self._warned = False
        self._shutdown = False
        self._full: str | None = None  # why the store takes no more spans in this process
        #: Why the last export failed, when more can be said than "export failed".
        self.failure_reason: str | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        if self._full and any(span.parent is not None for span in spans):
            # Roots still go in (the pipeline exports them alone at exit): a few hundred bytes
            # that keep the trace's summary and its drop count readable.
            self.failure_reason = self._full
            return SpanExportResult.FAILURE
        self.failure_reason = None
        try:
            store = self._open()
            store.add(spans)
        except Exception as exc:
            self._report(f"cannot write spans to the local store {self.path}: {exc}")
            return SpanExportResult.FAILURE
        with self._lock:
            due = self._exports % PRUNE_EVERY == 0
            self._exports += 1
        try:
            limit = self.max_mb * 1024 * 1024
            if due or (limit > 0 and store.size_bytes() > limit):
                store.prune(self.max_age_days, self.max_mb)
                # Pruning never deletes the trace being written: when it alone is over the
                # limit, stop storing; the pipeline counts every refused span with this reason.
                if limit > 0 and store.size_bytes() > limit:
                    self._full = f"store size limit ({self.max_mb:g} MB) reached"
        except Exception as exc:
            self._report(f"cannot prune the local store {self.path}: {exc}")
        return SpanExportResult.SUCCESS

    def _open(self) -> SpanStore:
        with self._lock:
            if self._store is None:
                # Here, not at the top: a program that exports nothing never loads SQLite.
                from otel_scope.store.spanstore import SpanStore

                self._store = SpanStore(self.path)
            return self._store

    def _report(self, message: str) -> None:
        if self._warned:
            _logger.debug("otel-scope: %s", message)
        else:
            self._warned = True
            _logger.warning("otel-scope: %s (further errors are logged at debug level)", message)

    def shutdown(self) -> None:
        self._shutdown = True
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        # Every export is committed before it returns; there is nothing buffered to flush.
        return True
