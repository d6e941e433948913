"""Reading OTLP JSON and JSONL trace files span by span.

A trace file from a big program is hundreds of megabytes; parsed whole, it takes gigabytes.
OTLP JSON names each span's resource before its spans, so the file can be read as a stream of
parse events (ijson, a C-backed incremental parser): each span object is built on its own,
converted, and handed on, and only one span and the current resource are ever held. JSONL (one
export request per line, as the OTLP file exporter writes) is the same stream of documents.
Other formats (Jaeger's JSON puts the processes after the spans) are read whole by
:class:`~otel_scope.timeline.sources.FileSource`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import ijson

from otel_scope.timeline.errors import SourceError
from otel_scope.timeline.model import SpanRecord
from otel_scope.timeline.otlp_json import attributes_from_otlp, camel_case, span_from_otlp

_SNAKE = re.compile(r"_([a-z])")
_WRAPPER = r"^(?:(?:result|trace)\.)?(?:resourceSpans|batches)\.item"
_RESOURCE = re.compile(_WRAPPER + r"\.resource$")
_SPAN = re.compile(_WRAPPER + r"\.(?:scopeSpans|instrumentationLibrarySpans)\.item\.spans\.item$")
_OTLP_KEYS = frozenset({"resourceSpans", "resource_spans", "batches", "result", "trace"})


def is_streamable(path: str) -> bool:
    """Whether the file's first document is OTLP JSON (maybe wrapped in a saved API answer)."""
    try:
        with open(path, "rb") as fh:
            for prefix, event, value in ijson.parse(fh, multiple_values=True):
                if event == "map_key" and prefix == "":
                    return value in _OTLP_KEYS
                if event not in ("start_map",):
                    return False
    except (OSError, ijson.JSONError, UnicodeDecodeError):
        return False
    return False


def otlp_spans(path: str) -> Iterator[SpanRecord]:
    """Every span of an OTLP JSON or JSONL file, in file order, one at a time."""
    resource: dict[str, Any] = {}
    builder: ijson.ObjectBuilder | None = None
    building = ""
    try:
        with open(path, "rb") as fh:
            for prefix, event, value in ijson.parse(fh, multiple_values=True, use_float=True):
                if builder is not None:
                    builder.event(event, value)
                    if event == "end_map" and prefix == building:
                        obj = camel_case(builder.value)
                        builder = None
                        if _RESOURCE.match(_SNAKE.sub(lambda m: m.group(1).upper(), prefix)):
                            resource = attributes_from_otlp(obj.get("attributes"))
                        else:
                            yield span_from_otlp(obj, resource)
                    continue
                if event != "start_map":
                    continue
                key = _SNAKE.sub(lambda m: m.group(1).upper(), prefix)
                if _RESOURCE.match(key) or _SPAN.match(key):
                    builder, building = ijson.ObjectBuilder(), prefix
                    builder.event(event, value)
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc}") from None
    except (ijson.JSONError, UnicodeDecodeError) as exc:
        raise SourceError(
            f"{path} is not valid JSON ({exc}); expected an OTLP JSON or Jaeger JSON trace file"
        ) from None
    except (AttributeError, TypeError, ValueError) as exc:
        raise SourceError(f"{path}: malformed OTLP JSON span ({type(exc).__name__}: {exc})") from None
