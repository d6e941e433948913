"""Where a trace comes from: the local store, Jaeger, Tempo, or a file, behind one interface.

``otel-scope history`` and ``export`` only ever call :meth:`TraceSource.get_trace` and
:meth:`TraceSource.last_trace_id`; each source turns its backend's shape into
:class:`~otel_scope.store.records.TraceData` and every failure into :class:`SourceError` (or its
subclass :class:`TraceNotFound`) with a one-line message naming what to check.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections import defaultdict
from contextlib import AbstractContextManager
from typing import Any, Protocol

from otel_scope.store import SpanStore, StoreError
from otel_scope.store.records import SpanRecord, TraceData
from otel_scope.timeline.errors import SourceError, TraceNotFound
from otel_scope.timeline.jaeger_json import traces_from_jaeger
from otel_scope.timeline.otlp_json import normalize_id, spans_from_otlp
from otel_scope.timeline.reader import TraceReader
from otel_scope.timeline.staging import staged

HTTP_TIMEOUT_S = 10.0


class TraceSource(Protocol):
    """Anything that can hand out one trace by ID."""

    def get_trace(self, trace_id: str) -> TraceData:
        """The trace, or :class:`TraceNotFound`; other failures raise :class:`SourceError`."""
        ...

    def open_trace(self, trace_id: str) -> AbstractContextManager[TraceReader]:
        """The trace as a lazy :class:`TraceReader` (what the timeline and export read)."""
        ...

    def last_trace_id(self) -> str | None:
        """The most recent trace, or ``None`` when the source holds none."""
        ...


def _hex_query(trace_id: str) -> str:
    text = trace_id.strip().lower()
    if not text or len(text) > 32 or any(c not in "0123456789abcdef" for c in text):
        raise TraceNotFound(f"{trace_id!r} is not a trace ID (up to 32 hex digits)")
    return text


# -- local store ---------------------------------------------------------------------------------
class LocalStoreSource:
    """The embedded SQLite store the ``otel_scope`` exporter writes (accepts unique ID prefixes)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        # Reading must not create an empty store: a missing file means nothing was exported yet.
        if not os.path.isfile(self.path):
            raise SourceError(
                f"no traces stored yet at {self.path}; run your app under "
                "`opentelemetry-instrument --traces_exporter otel_scope python app.py` "
                "(or set OTEL_SCOPE_STORE_PATH to the store you used)"
            )
        try:
            self.store = SpanStore(self.path, read_only=True)  # reading never creates or changes it
        except (StoreError, OSError, sqlite3.Error) as exc:
            raise SourceError(f"cannot open the local store {self.path}: {exc}") from None

    def get_trace(self, trace_id: str) -> TraceData:
        try:
            trace = self.store.get_trace(_hex_query(trace_id))
        except StoreError as exc:
            raise SourceError(str(exc)) from None
        if trace is None:
            raise TraceNotFound(
                f"no trace {trace_id} in the local store {self.path}; "
                "`otel-scope sessions` lists the stored ones"
            )
        return trace

    def open_trace(self, trace_id: str) -> AbstractContextManager[TraceReader]:
        """Read the stored trace in place, without loading it."""
        try:
            full = self.store.resolve(_hex_query(trace_id))
        except StoreError as exc:
            raise SourceError(str(exc)) from None
        if full is None:
            raise TraceNotFound(
                f"no trace {trace_id} in the local store {self.path}; "
                "`otel-scope sessions` lists the stored ones"
            )
        return TraceReader(self.path, full)

    def last_trace_id(self) -> str | None:
        return self.store.last_trace_id()


class _Staged(ABC):
    """``open_trace`` for sources that answer with a whole trace: stage it for the reader."""

    @abstractmethod
    def get_trace(self, trace_id: str) -> TraceData: ...

    def open_trace(self, trace_id: str) -> AbstractContextManager[TraceReader]:
        return staged(self.get_trace(trace_id))


# -- HTTP backends -------------------------------------------------------------------------------
class _Http:
    """GET JSON from a backend, turning transport failures into one-line :class:`SourceError`\\ s."""

    def __init__(self, backend: str, base_url: str, timeout: float, hint: str) -> None:
        self.backend, self.base_url, self.timeout, self.hint = backend, base_url.rstrip("/"), timeout, hint

    def get(self, path: str, params: dict[str, Any] | None = None) -> tuple[int, Any]:
        """``(status, parsed JSON or None)``; a non-JSON body gives ``None``."""
        # Here: only the Jaeger and Tempo sources need urllib.request (~30 ms to import).
        from urllib.error import HTTPError, URLError
        from urllib.request import Request, urlopen

        url = self.base_url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        request = Request(url, headers={"Accept": "application/json"})
        try:
            with urlopen(request, timeout=self.timeout) as response:
                status, body = response.status, response.read()
        except HTTPError as exc:
            status, body = exc.code, exc.read()
        except (URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SourceError(
                f"cannot reach {self.backend} at {self.base_url} ({reason}); {self.hint}"
            ) from None
        try:
            return status, json.loads(body)
        except ValueError:
            return status, None

    def unexpected(self, path: str, status: int) -> SourceError:
        return SourceError(f"{self.backend} at {self.base_url}{path} answered HTTP {status}; {self.hint}")


def _not_found(backend: str, base_url: str, trace_id: str) -> TraceNotFound:
    return TraceNotFound(
        f"trace {trace_id} not found in {backend} at {base_url}; check the full 32-digit ID "
        "and that the trace was exported there and is still within its retention"
    )


def _from_otlp(trace_id: str, document: Any, warnings: list[str] | None = None) -> TraceData | None:
    if not isinstance(document, dict):
        return None
    spans = [s for s in spans_from_otlp(document) if s.trace_id == trace_id]
    return TraceData(trace_id, spans, warnings or []) if spans else None


class JaegerSource(_Staged):
    """Jaeger's query service (port 16686): the v3 API, falling back to the legacy UI API."""

    def __init__(self, base_url: str, *, timeout: float = HTTP_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = _Http(
            "Jaeger",
            self.base_url,
            timeout,
            "check that Jaeger is running and that the URL is its query/UI port (16686)",
        )

    def get_trace(self, trace_id: str) -> TraceData:
        tid = _hex_query(trace_id).zfill(32)
        status, doc = self._http.get(f"/api/v3/traces/{tid}")
        if status == 200 and isinstance(doc, dict) and isinstance(doc.get("result"), dict):
            trace = _from_otlp(tid, doc["result"])
            if trace is not None:
                return trace
        # Jaeger v1 (or a v2 without the v3 gateway) has no v3 route: ask the legacy API, whose
        # answer also settles "not found" for both.
        path = f"/api/traces/{tid}"
        status, doc = self._http.get(path)
        if status == 404:
            raise _not_found("Jaeger", self.base_url, tid)
        if status != 200 or not isinstance(doc, dict):
            raise self._http.unexpected(path, status)
        traces = [t for t in traces_from_jaeger(doc) if t.trace_id == tid and t.spans]
        if not traces:
            raise _not_found("Jaeger", self.base_url, tid)
        return traces[0]

    def last_trace_id(self) -> str | None:
        """The trace with the latest span end among the services' recent traces (last 24 hours)."""
        status, doc = self._http.get("/api/services")
        if status != 200 or not isinstance(doc, dict):
            raise self._http.unexpected("/api/services", status)
        now_us = time.time_ns() // 1000
        best: tuple[int, str] | None = None
        for service in doc.get("data") or []:
            if service in _JAEGER_SELF:
                continue
            params = {"service": service, "limit": 20, "start": now_us - 86_400_000_000, "end": now_us}
            status, found = self._http.get("/api/traces", params)
            if status != 200 or not isinstance(found, dict):
                continue
            for trace in traces_from_jaeger(found):
                latest = max((s.end_ns for s in trace.spans), default=0)
                if best is None or latest > best[0]:
                    best = (latest, trace.trace_id)
        return best[1] if best else None


# The query service traces itself; its own traces are never what a user means by "the last one".
_JAEGER_SELF = frozenset({"jaeger", "jaeger-all-in-one", "jaeger-query", "jaeger-collector"})


class TempoSource(_Staged):
    """Grafana Tempo's HTTP API (port 3200): v2 trace-by-ID, falling back to v1."""

    def __init__(self, base_url: str, *, timeout: float = HTTP_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = _Http(
            "Tempo",
            self.base_url,
            timeout,
            "check that Tempo is running and that the URL is its HTTP port (3200)",
        )

    def get_trace(self, trace_id: str) -> TraceData:
        tid = _hex_query(trace_id).zfill(32)
        status, doc = self._http.get(f"/api/v2/traces/{tid}")
        if status == 200 and isinstance(doc, dict) and isinstance(doc.get("trace"), dict):
            warnings = []
            if doc.get("status") == "PARTIAL":
                warnings.append(
                    f"Tempo returned a partial trace: {doc.get('message') or 'some blocks did not answer'}"
                )
            trace = _from_otlp(tid, doc["trace"], warnings)
            if trace is not None:
                return trace
        # Tempo before 2.5 has only the v1 endpoint (base64 IDs, "batches" instead of "resourceSpans").
        path = f"/api/traces/{tid}"
        status, doc = self._http.get(path)
        if status == 404:
            raise _not_found("Tempo", self.base_url, tid)
        if status != 200 or not isinstance(doc, dict):
            raise self._http.unexpected(path, status)
        trace = _from_otlp(tid, doc)
        if trace is None:
            raise _not_found("Tempo", self.base_url, tid)
        return trace

    def last_trace_id(self) -> str | None:
        """The newest of the traces Tempo's search returns with no query (its recent traces)."""
        status, doc = self._http.get("/api/search", {"limit": 20})
        if status != 200 or not isinstance(doc, dict):
            raise self._http.unexpected("/api/search", status)
        found = [
            (int(t.get("startTimeUnixNano") or 0), normalize_id(t.get("traceID"), 16))
            for t in doc.get("traces") or []
            if isinstance(t, dict) and t.get("traceID")
        ]
        return max(found)[1] if found else None


# -- files ---------------------------------------------------------------------------------------
def traces_from_document(document: Any) -> list[TraceData]:
    """Every trace in one parsed JSON document, whichever format it is in.

    Accepted: OTLP JSON (``resourceSpans``; Tempo v1 ``batches``), saved API answers (Jaeger v3
    ``{"result": ...}``, Tempo v2 ``{"trace": ...}``), and Jaeger's legacy JSON (``{"data": [...]}``,
    a bare list of traces, or one trace).
    """
    if isinstance(document, dict):
        for wrapper in ("result", "trace"):
            if isinstance(document.get(wrapper), dict):
                document = document[wrapper]
                break
        if any(k in document for k in ("resourceSpans", "resource_spans", "batches")):
            return _group(spans_from_otlp(document))
        if "data" in document or "spans" in document:
            return traces_from_jaeger(document)
    if isinstance(document, list):
        traces: list[TraceData] = []
        for item in document:
            traces += traces_from_document(item)
        return _merge(traces)
    raise SourceError("neither OTLP JSON (resourceSpans) nor Jaeger JSON (data/spans)")


def _group(spans: list[SpanRecord]) -> list[TraceData]:
    by_trace: dict[str, list[SpanRecord]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    return [TraceData(tid, group) for tid, group in by_trace.items()]


def _merge(traces: list[TraceData]) -> list[TraceData]:
    # A JSONL file holds one export request per line, so one trace is usually spread over lines.
    merged: dict[str, TraceData] = {}
    for trace in traces:
        if trace.trace_id in merged:
            merged[trace.trace_id] = TraceData(
                trace.trace_id,
                merged[trace.trace_id].spans + trace.spans,
                merged[trace.trace_id].warnings + trace.warnings,
            )
        else:
            merged[trace.trace_id] = trace
    return list(merged.values())


class FileSource(_Staged):
    """A trace file: OTLP JSON or JSONL (the OTLP file exporter's output), or Jaeger JSON."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        try:
            with open(self.path, encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"cannot read {self.path}: {exc}") from None
        try:
            documents = [json.loads(text)]
        except ValueError:
            documents = []
            for number, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    documents.append(json.loads(line))
                except ValueError as exc:
                    raise SourceError(
                        f"{self.path} line {number} is not JSON ({exc}); "
                        "expected an OTLP JSON or Jaeger JSON trace file"
                    ) from None
        try:
            self.traces = traces_from_document(documents)
        except SourceError as exc:
            raise SourceError(
                f"{self.path}: {exc}; expected an OTLP JSON or Jaeger JSON trace file"
            ) from None
        if not any(t.spans for t in self.traces):
            raise SourceError(f"{self.path} holds no spans")
        self.traces.sort(key=lambda t: t.start_ns)

    def get_trace(self, trace_id: str) -> TraceData:
        prefix = _hex_query(trace_id)
        matches = [t for t in self.traces if t.trace_id.startswith(prefix)]
        if len(matches) > 1:
            raise SourceError(
                f"trace ID prefix {prefix!r} matches {len(matches)} traces in {self.path}; type more digits"
            )
        if not matches:
            raise TraceNotFound(
                f"no trace {trace_id} in {self.path}; "
                f"it holds {', '.join(t.trace_id for t in self.traces[:5])}"
            )
        return matches[0]

    def last_trace_id(self) -> str | None:
        return max(self.traces, key=lambda t: t.end_ns).trace_id if self.traces else None
