"""Jaeger's legacy JSON (``GET /api/traces/<id>``, and the files its UI opens offline).

Jaeger turns OTLP into its own model: attributes become typed ``tags``, events become ``logs``
whose ``event`` field is the event name, the span kind and status become the ``span.kind``,
``otel.status_code``, ``otel.status_description`` and ``error`` tags, the parent becomes a
``CHILD_OF`` reference, links become ``FOLLOWS_FROM`` references (without their attributes), and
the resource becomes a shared "process". Times are microseconds. This module maps both ways, so
a trace written here reads back with the same spans, events and attributes (times to the µs).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from otel_scope.store.records import SPAN_KINDS, EventRecord, LinkRecord, SpanRecord, TraceData
from otel_scope.timeline.errors import SourceError
from otel_scope.timeline.otlp_json import normalize_id

# Tags Jaeger derives from span fields rather than attributes; they map back to those fields.
_KIND_TAG = "span.kind"
_STATUS_TAG = "otel.status_code"
_STATUS_MESSAGE_TAG = "otel.status_description"
_ERROR_TAG = "error"
# Tags Jaeger adds about the instrumentation scope or its own storage, not span attributes.
_DROPPED_TAGS = frozenset(
    {
        "otel.scope.name",
        "otel.scope.version",
        "otel.library.name",
        "otel.library.version",
        "internal.span.format",
    }
)


def _tag_value(tag: dict[str, Any]) -> Any:
    value: Any  # whatever the JSON holds; a wrong kind raises, reported by traces_from_jaeger
    value, kind = tag.get("value"), tag.get("type", "string")
    if kind == "bool":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    if kind == "int64":
        return int(value)
    if kind == "float64":
        return float(value)
    if kind == "binary":
        return str(value)
    return value if isinstance(value, str) else json.dumps(value)


def _tags(items: Any) -> dict[str, Any]:
    return {str(t.get("key", "")): _tag_value(t) for t in items or [] if isinstance(t, dict)}


def _to_tag(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "type": "bool", "value": value}
    if isinstance(value, int):
        return {"key": key, "type": "int64", "value": value}
    if isinstance(value, float):
        return {"key": key, "type": "float64", "value": value}
    if isinstance(value, bytes):
        return {"key": key, "type": "binary", "value": base64.b64encode(value).decode()}
    if isinstance(value, str):
        return {"key": key, "type": "string", "value": value}
    # Arrays and maps: Jaeger stores their JSON text, and so do we.
    return {"key": key, "type": "string", "value": json.dumps(value, default=str)}


# -- reading -------------------------------------------------------------------------------------
def traces_from_jaeger(document: Any) -> list[TraceData]:
    """Traces from ``{"data": [trace, ...]}``, a bare list of traces, or one trace object."""
    if isinstance(document, dict) and "data" in document:
        items = document["data"] or []
    elif isinstance(document, list):
        items = document
    else:
        items = [document]
    traces = []
    try:
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("spans"), list):
                raise SourceError("a Jaeger trace needs a 'spans' list")
            traces.append(_trace(item))
    except (AttributeError, TypeError, ValueError, KeyError) as exc:
        raise SourceError(f"malformed Jaeger JSON span ({type(exc).__name__}: {exc})") from None
    return traces


def _trace(item: dict[str, Any]) -> TraceData:
    processes = {
        pid: {"service.name": p.get("serviceName", ""), **_tags(p.get("tags"))}
        for pid, p in (item.get("processes") or {}).items()
    }
    spans = []
    for s in item["spans"]:
        process = s.get("process")
        resource = (
            {"service.name": process.get("serviceName", ""), **_tags(process.get("tags"))}
            if isinstance(process, dict)
            else processes.get(s.get("processID"), {})
        )
        spans.append(_span(s, resource))
    trace_id = spans[0].trace_id if spans else normalize_id(item.get("traceID"), 16)
    return TraceData(trace_id, spans, [str(w) for w in item.get("warnings") or []])


def _span(s: dict[str, Any], resource: dict[str, Any]) -> SpanRecord:
    trace_id = normalize_id(s["traceID"], 16)
    parent = normalize_id(s.get("parentSpanID"), 8) or None
    links = []
    for ref in s.get("references") or []:
        ref_trace = normalize_id(ref.get("traceID"), 16) or trace_id
        ref_span = normalize_id(ref.get("spanID"), 8)
        if ref.get("refType", "CHILD_OF") == "CHILD_OF" and parent is None and ref_trace == trace_id:
            parent = ref_span
        else:
            links.append(LinkRecord(ref_trace, ref_span))
    tags = _tags(s.get("tags"))
    kind = str(tags.pop(_KIND_TAG, "internal")).upper()
    status = str(tags.pop(_STATUS_TAG, "")).upper()
    message = str(tags.pop(_STATUS_MESSAGE_TAG, ""))
    if tags.get(_ERROR_TAG) is True and status in ("", "ERROR"):
        del tags[_ERROR_TAG]
        status = "ERROR"
    for key in _DROPPED_TAGS:
        tags.pop(key, None)
    start = int(s.get("startTime", 0)) * 1000
    events = []
    for log in s.get("logs") or []:
        fields = _tags(log.get("fields"))
        name = fields.pop("event", "log")
        events.append(EventRecord(str(name), int(log.get("timestamp", 0)) * 1000, fields))
    return SpanRecord(
        trace_id=trace_id,
        span_id=normalize_id(s["spanID"], 8),
        parent_span_id=parent,
        name=str(s.get("operationName", "")),
        kind=kind if kind in SPAN_KINDS else "INTERNAL",
        start_ns=start,
        end_ns=start + int(s.get("duration", 0)) * 1000,
        attributes=tags,
        events=events,
        links=links,
        status_code=status if status in ("OK", "ERROR") else "UNSET",
        status_message=message,
        resource=resource,
    )


# -- writing -------------------------------------------------------------------------------------
def to_jaeger_json(trace: TraceData) -> dict[str, Any]:
    """The trace in the shape of Jaeger's ``GET /api/traces/<id>`` answer.

    The Jaeger UI opens this file offline ("Search" > "JSON File"), with no backend involved.
    """
    processes: dict[str, dict[str, Any]] = {}
    process_ids: dict[str, str] = {}
    spans = []
    for span in trace.spans:
        key = json.dumps(span.resource, sort_keys=True, default=str)
        if key not in process_ids:
            process_ids[key] = f"p{len(process_ids) + 1}"
            processes[process_ids[key]] = jaeger_process(span.resource)
        spans.append(span_to_jaeger(span, process_ids[key]))
    return {"data": [{"traceID": trace.trace_id, "spans": spans, "processes": processes,
                      "warnings": trace.warnings or None}], **JAEGER_ENVELOPE}  # fmt: skip


# The fields around the traces of a Jaeger answer.
JAEGER_ENVELOPE: dict[str, Any] = {"total": 0, "limit": 0, "offset": 0, "errors": None}


def jaeger_process(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource as a Jaeger process: its service name, and the rest as tags."""
    rest = {k: v for k, v in resource.items() if k != "service.name"}
    return {
        "serviceName": str(resource.get("service.name", "unknown_service")),
        "tags": [_to_tag(k, v) for k, v in rest.items()],
    }


def span_to_jaeger(span: SpanRecord, process_id: str) -> dict[str, Any]:
    references = []
    if span.parent_span_id:
        references.append({"refType": "CHILD_OF", "traceID": span.trace_id, "spanID": span.parent_span_id})
    references += [
        {"refType": "FOLLOWS_FROM", "traceID": x.trace_id, "spanID": x.span_id} for x in span.links
    ]
    tags = [_to_tag(k, v) for k, v in span.attributes.items()]
    tags.append(_to_tag(_KIND_TAG, span.kind.lower()))
    if span.status_code != "UNSET":
        tags.append(_to_tag(_STATUS_TAG, span.status_code))
    if span.status_message:
        tags.append(_to_tag(_STATUS_MESSAGE_TAG, span.status_message))
    if span.status_code == "ERROR":
        tags.append(_to_tag(_ERROR_TAG, True))
    return {
        "traceID": span.trace_id,
        "spanID": span.span_id,
        "operationName": span.name,
        "references": references,
        "startTime": span.start_ns // 1000,
        # Rounding both ends (not the duration) keeps the end time exact to the microsecond.
        "duration": max(0, span.end_ns // 1000 - span.start_ns // 1000),
        "tags": tags,
        "logs": [
            {
                "timestamp": e.time_ns // 1000,
                "fields": [_to_tag("event", e.name)] + [_to_tag(k, v) for k, v in e.attributes.items()],
            }
            for e in span.events
        ],
        "processID": process_id,
        "warnings": None,
    }
