"""The embedded local span store (SQLite) and its OTel exporter.

Default location: ``Settings().store_path``, i.e. ``$OTEL_SCOPE_STORE_PATH``, else
``$XDG_STATE_HOME/otel-scope/traces.sqlite3``, else ``~/.local/state/otel-scope/traces.sqlite3``.
"""

from typing import TYPE_CHECKING, Any

from otel_scope.store.spanstore import SessionSummary, SpanStore, StoreError, record_from_span

if TYPE_CHECKING:
    from otel_scope.store.exporter import PRUNE_EVERY, LocalStoreSpanExporter

__all__ = [
    "PRUNE_EVERY",
    "LocalStoreSpanExporter",
    "SessionSummary",
    "SpanStore",
    "StoreError",
    "record_from_span",
]


def __getattr__(name: str) -> Any:
    """The exporter on first use: it imports the OpenTelemetry SDK, which reading the store
    (every ``otel-scope`` command) does not need."""
    if name in ("LocalStoreSpanExporter", "PRUNE_EVERY"):
        from otel_scope.store import exporter

        return getattr(exporter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
