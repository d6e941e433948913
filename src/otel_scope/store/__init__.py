"""The embedded local span store (SQLite) and its OTel exporter.

Default location: ``Settings().store_path``, i.e. ``$OTEL_SCOPE_STORE_PATH``, else
``$XDG_STATE_HOME/otel-scope/traces.sqlite3``, else ``~/.local/state/otel-scope/traces.sqlite3``.
"""

from otel_scope.store.exporter import PRUNE_EVERY, LocalStoreSpanExporter
from otel_scope.store.spanstore import SessionSummary, SpanStore, StoreError, record_from_span

__all__ = [
    "PRUNE_EVERY",
    "LocalStoreSpanExporter",
    "SessionSummary",
    "SpanStore",
    "StoreError",
    "record_from_span",
]
