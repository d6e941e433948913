"""Reading OTLP JSON and JSONL trace files span by span.

A trace file from a big program is hundreds of megabytes; parsed whole, it takes gigabytes.
Four ways, fastest first, each holding one span (or one line) at a time:

- JSONL (one export request per line, as the OTLP file exporter writes): each line is parsed on
  its own.
- The layout ``otel-scope export`` writes (one span per line between a line per resource):
  each span line is parsed on its own by the C decoder, three times faster than ijson.
- One document with one resource (what ``otel-scope export`` writes for one process): ijson's C
  backend builds each span object itself, after a first pass has read the one resource.
- Anything else in OTLP JSON: ijson's parse events, building each span object in Python.

Other formats (Jaeger's JSON puts the processes after the spans) are read whole by
:class:`~otel_scope.timeline.sources.FileSource`.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import ijson

from otel_scope.store.records import SpanRecord
from otel_scope.timeline.errors import SourceError
from otel_scope.timeline.otlp_json import attributes_from_otlp, camel_case, span_from_otlp, spans_from_otlp

_SNAKE = re.compile(r"_([a-z])")
_WRAPPER = r"^(?:(?:result|trace)\.)?(?:resourceSpans|batches)\.item"
_RESOURCE = re.compile(_WRAPPER + r"\.resource$")
_SPAN = re.compile(_WRAPPER + r"\.(?:scopeSpans|instrumentationLibrarySpans)\.item\.spans\.item$")
_OTLP_KEYS = frozenset({"resourceSpans", "resource_spans", "batches", "result", "trace"})
_MAX_LINE = 16 * 2**20  # a longer first line is not read as one JSONL document


def _jsonl_spans(path: str) -> Iterator[SpanRecord] | None:
    """The spans of a JSONL file, line by line, or ``None`` if the first line is not a document."""
    with open(path, "rb") as fh:
        first = fh.readline(_MAX_LINE + 1)
    if len(first) > _MAX_LINE:
        return None
    try:
        json.loads(first)
    except ValueError:
        return None

    def lines() -> Iterator[SpanRecord]:
        with open(path, "rb") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    document = json.loads(line)
                except ValueError as exc:
                    raise SourceError(f"{path} line {number} is not JSON ({exc})") from None
                if isinstance(document, dict):  # a saved Jaeger v3 or Tempo v2 answer
                    document = next(
                        (document[k] for k in ("result", "trace") if isinstance(document.get(k), dict)),
                        document,
                    )
                yield from spans_from_otlp(document)

    return lines()


# otel-scope export's own layout (timeline/writers.py): the lines around the spans.
_DOCUMENT_OPEN = b'{"resourceSpans": ['
_RESOURCE_OPEN = '{"resource": '
_SPANS_OPEN = ', "scopeSpans": [{"scope": {}, "spans": ['
_SPANS_CLOSE = "]}]}"
_DOCUMENT_CLOSE = "]}"
# A proto field name (snake_case) as an object key: only a line with one needs camel_case().
_SNAKE_KEY = re.compile(r'"[a-z0-9]*_[a-z0-9_]*"\s*:')
# The C scanner behind json.loads, called directly (no type checks or whitespace matching).
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


class _NotTheLayout(Exception):
    """A line that is not where otel-scope export's layout would put it."""


def _exported_spans(path: str) -> Iterator[SpanRecord] | None:
    """The spans of a file in otel-scope export's layout, one line each, or ``None`` if it does
    not start like one. A later line out of place (an edited file) hands over to the general
    reader, which skips the spans already given: both read the same objects in file order."""
    with open(path, "rb") as fh:
        if fh.readline(len(_DOCUMENT_OPEN) + 3).rstrip(b"\r\n") != _DOCUMENT_OPEN:
            return None

    def spans() -> Iterator[SpanRecord]:
        given = 0
        try:
            for span in _layout_spans(path):
                yield span
                given += 1
        except _NotTheLayout:
            yield from itertools.islice(_one_resource_spans(path) or _event_spans(path), given, None)

    return spans()


def _decoded(line: str) -> dict[str, Any]:
    try:
        obj, end = _scan(line, 0)
    except (StopIteration, ValueError):
        raise _NotTheLayout from None
    if end != len(line) or not isinstance(obj, dict):
        raise _NotTheLayout
    return camel_case(obj) if _SNAKE_KEY.search(line) else obj


def _layout_spans(path: str) -> Iterator[SpanRecord]:
    resource: dict[str, Any] | None = None
    ended = False
    with open(path, encoding="utf-8", newline="\n") as fh:
        fh.readline()
        for raw in fh:
            line = raw.rstrip("\r\n")
            if ended:
                if line.strip():
                    raise _NotTheLayout  # anything after the document's end
                continue
            if resource is None:
                if line == _DOCUMENT_CLOSE:
                    ended = True
                    continue
                if not (line.startswith(_RESOURCE_OPEN) and line.endswith(_SPANS_OPEN)):
                    raise _NotTheLayout
                head = _decoded(line[len(_RESOURCE_OPEN) : -len(_SPANS_OPEN)])
                resource = attributes_from_otlp(head.get("attributes"))
                continue
            if line.endswith(","):
                line = line[:-1]
            last = line.endswith(_SPANS_CLOSE)
            if last:
                line = line[: -len(_SPANS_CLOSE)]
            yield span_from_otlp(_decoded(line), resource)
            if last:
                resource = None
    if not ended:
        raise _NotTheLayout


def _one_resource_spans(path: str) -> Iterator[SpanRecord] | None:
    """The spans of a document whose only resource comes first, built by ijson's C backend."""
    with open(path, "rb") as fh:
        for wrapper in ("", "result.", "trace."):
            fh.seek(0)
            resources = list(ijson.items(fh, wrapper + "resourceSpans.item.resource"))
            if resources:
                break
    if len(resources) != 1:
        return None
    resource = attributes_from_otlp(camel_case(resources[0]).get("attributes"))

    def spans() -> Iterator[SpanRecord]:
        with open(path, "rb") as fh:
            for span in ijson.items(
                fh, wrapper + "resourceSpans.item.scopeSpans.item.spans.item", use_float=True
            ):
                yield span_from_otlp(camel_case(span), resource)

    return spans()


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
    try:
        yield from (
            _jsonl_spans(path) or _exported_spans(path) or _one_resource_spans(path) or _event_spans(path)
        )
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc}") from None
    except (ijson.JSONError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path} is not valid JSON ({exc}); expected an OTLP JSON trace file") from None
    except (AttributeError, TypeError, ValueError) as exc:
        raise SourceError(f"{path}: malformed OTLP JSON span ({type(exc).__name__}: {exc})") from None


def _event_spans(path: str) -> Iterator[SpanRecord]:
    """The general case: any OTLP JSON or JSONL layout, from ijson's parse events."""
    resource: dict[str, Any] = {}
    builder: ijson.ObjectBuilder | None = None
    building = ""
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
