"""The embedded local span store (SQLite) and its OTel exporter.

Default location: ``Settings().store_path``, i.e. ``$OTEL_SCOPE_STORE_PATH``, else
``$XDG_STATE_HOME/otel-scope/traces.sqlite3``, else ``~/.local/state/otel-scope/traces.sqlite3``.
"""

from typing import TYPE_CHECKING, Any

from otel_scope import _lazy

if TYPE_CHECKING:
    from otel_scope.store.exporter import PRUNE_EVERY, LocalStoreSpanExporter
    from otel_scope.store.records import SessionSummary
    from otel_scope.store.spanstore import SpanStore, StoreError, record_from_span

__all__ = [
    "PRUNE_EVERY",
    "LocalStoreSpanExporter",
    "SessionSummary",
    "SpanStore",
    "StoreError",
    "record_from_span",
]


_SOURCES = {
    "LocalStoreSpanExporter": "otel_scope.store.exporter",
    "PRUNE_EVERY": "otel_scope.store.exporter",
    "SessionSummary": "otel_scope.store.records",
    **dict.fromkeys(("SpanStore", "StoreError", "record_from_span"), "otel_scope.store.spanstore"),
}


def __getattr__(name: str) -> Any:
    """The names above on first use. The exporter imports the OpenTelemetry SDK, which reading
    the store (every ``otel-scope`` command) does not need; the store itself (SQLite, the
    records) is not needed by a program that starts the exporter and exports nothing, as
    ``--scope-mode off`` or an empty run."""
    return _lazy.attribute(__name__, _SOURCES, name, globals())
