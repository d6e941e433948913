"""Reading one trace from any source, writing it to files, and rendering it as one timeline.

The model and errors load eagerly. Sources, writers and the renderer load on first use: the
local-store exporter imports the model inside every traced program, which should not pay for
``rich``, ``urllib`` and the format parsers it never uses (this also keeps ``otel_scope.store``
and ``otel_scope.timeline.sources`` free of an import cycle).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from otel_scope.store.records import EventRecord, LinkRecord, SpanRecord, TraceData
from otel_scope.timeline.errors import SourceError, TraceNotFound

if TYPE_CHECKING:  # what __getattr__ loads on first use, as mypy should see it
    from otel_scope.timeline.jaeger_json import to_jaeger_json
    from otel_scope.timeline.otlp_json import to_otlp_json
    from otel_scope.timeline.query import QueryError, Where, captured_values, compile_where
    from otel_scope.timeline.reader import TraceReader
    from otel_scope.timeline.render import (
        TimelineEntry,
        build_timeline,
        entries_to_json,
        follow,
        render_entries,
        render_history,
    )
    from otel_scope.timeline.sources import (
        FileSource,
        JaegerSource,
        LocalStoreSource,
        TempoSource,
        TraceSource,
        traces_from_document,
    )

_LAZY = {
    "TraceSource": "sources",
    "LocalStoreSource": "sources",
    "JaegerSource": "sources",
    "TempoSource": "sources",
    "FileSource": "sources",
    "traces_from_document": "sources",
    "to_otlp_json": "otlp_json",
    "to_jaeger_json": "jaeger_json",
    "TimelineEntry": "render",
    "build_timeline": "render",
    "follow": "render",
    "entries_to_json": "render",
    "render_entries": "render",
    "render_history": "render",
    "TraceReader": "reader",
    "compile_where": "query",
    "captured_values": "query",
    "QueryError": "query",
    "Where": "query",
}

__all__ = [
    "EventRecord",
    "FileSource",
    "JaegerSource",
    "LinkRecord",
    "LocalStoreSource",
    "QueryError",
    "SourceError",
    "SpanRecord",
    "TempoSource",
    "TimelineEntry",
    "TraceData",
    "TraceNotFound",
    "TraceReader",
    "TraceSource",
    "Where",
    "build_timeline",
    "captured_values",
    "compile_where",
    "entries_to_json",
    "follow",
    "render_entries",
    "render_history",
    "to_jaeger_json",
    "to_otlp_json",
    "traces_from_document",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
