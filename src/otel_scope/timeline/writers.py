"""Writing a trace file span by span, straight from a :class:`TraceReader`.

``to_otlp_json`` and ``to_jaeger_json`` build the whole document in memory, which took a gigabyte
for an 80 MB store. These write the same documents incrementally: the envelope by hand, each span
as :func:`~otel_scope.timeline.otlp_json.span_to_otlp_json` or
:func:`~otel_scope.timeline.jaeger_json.span_to_jaeger` makes it, one at a time, so memory stays
that of one span whatever the trace's size. Each returns the number of spans written.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from otel_scope.timeline.jaeger_json import JAEGER_ENVELOPE, jaeger_process, span_to_jaeger
from otel_scope.timeline.otlp_json import attributes_to_otlp, span_to_otlp_json
from otel_scope.timeline.reader import TraceReader

# One encoder for the whole file: json.dumps() with options builds a new one per call (per span).
_dumps = json.JSONEncoder(ensure_ascii=False, default=str).encode


def write_otlp_json(reader: TraceReader, out: TextIO) -> int:
    """The trace as OTLP JSON (``{"resourceSpans": [...]}``), one ``resourceSpans`` per resource."""
    count = 0
    out.write('{"resourceSpans": [')
    for number, resource in enumerate(reader.resources()):
        head = {"attributes": attributes_to_otlp(json.loads(resource))}
        out.write(
            ("," if number else "")
            + f'\n{{"resource": {_dumps(head)}, "scopeSpans": [{{"scope": {{}}, "spans": ['
        )
        for index, span in enumerate(reader.spans_of_resource(resource)):
            out.write(("," if index else "") + "\n" + span_to_otlp_json(span))
            count += 1
        out.write("]}]}")
    out.write("\n]}\n")
    return count


def write_jaeger_json(reader: TraceReader, out: TextIO) -> int:
    """The trace as Jaeger's legacy JSON, one process per resource."""
    count = 0
    processes: dict[str, Any] = {}
    out.write(f'{{"data": [{{"traceID": {_dumps(reader.trace_id)}, "spans": [')
    for number, resource in enumerate(reader.resources()):
        process_id = f"p{number + 1}"
        processes[process_id] = jaeger_process(json.loads(resource))
        for span in reader.spans_of_resource(resource):
            out.write(("," if count else "") + "\n" + _dumps(span_to_jaeger(span, process_id)))
            count += 1
    warnings = _dumps(reader.warnings or None)
    envelope = _dumps(JAEGER_ENVELOPE)[1:-1]
    out.write(f'\n], "processes": {_dumps(processes)}, "warnings": {warnings}}}], {envelope}}}\n')
    return count
