"""OTLP JSON: reading what Jaeger v3, Tempo and the OTLP file exporter return, and writing it back.

The OTLP spec requires hex trace and span IDs in JSON, but real producers differ: Tempo's v1 API
and protobuf's ``MessageToDict`` emit base64, Tempo's search trims leading zeros, and field names
may be lowerCamelCase or the proto's snake_case. Reading accepts all of these; writing produces
exactly what the spec (and Jaeger's "upload JSON" page) expects: hex IDs, int64 values and times
as decimal strings, enums as integers.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable
from typing import Any

from otel_scope.store.records import SPAN_KINDS, STATUS_CODES, EventRecord, LinkRecord, SpanRecord, TraceData
from otel_scope.timeline.errors import SourceError

_HEX = re.compile(r"^[0-9a-fA-F]+$")
_SNAKE = re.compile(r"_([a-z])")
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def normalize_id(value: Any, size: int) -> str:
    """``value`` as lower-case hex of ``size`` bytes, whether it came as hex, base64 or trimmed hex.

    An empty value gives ``""`` (OTLP's "no parent"). Anything else raises :class:`SourceError`.
    """
    text = str(value or "").strip()
    if not text:
        return ""
    if len(text) == size * 2 and _HEX.match(text):
        return text.lower()
    decoders: tuple[Callable[[str], bytes], ...] = (base64.b64decode, base64.urlsafe_b64decode)
    for decode in decoders:
        try:
            raw = decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(raw) == size:
            return raw.hex()
    if len(text) < size * 2 and _HEX.match(text):
        return text.lower().zfill(size * 2)
    raise SourceError(f"{text!r} is not a {size * 8}-bit ID in hex or base64")


_CAMEL: dict[str, str] = {}  # key -> its lowerCamelCase: OTLP has a few dozen field names
_CAMEL_CAP = 4096


def _camel_key(key: str) -> str:
    camel = _CAMEL.get(key)
    if camel is None:
        camel = _SNAKE.sub(lambda m: m.group(1).upper(), key) if "_" in key else key
        if len(_CAMEL) < _CAMEL_CAP:
            _CAMEL[key] = camel
    return camel


def camel_case(obj: Any) -> Any:
    """``obj`` with every object key in lowerCamelCase (proto field names are snake_case)."""
    # proto3 JSON parsers must accept the proto field names too; OTLP JSON never uses user data
    # as object keys (attributes are lists of {"key", "value"}), so renaming every key is safe.
    # Scalars (most of a span) are taken as they are, without a call each: this runs per span
    # of a million-span file.
    if isinstance(obj, dict):
        return {_camel_key(k): camel_case(v) if isinstance(v, dict | list) else v for k, v in obj.items()}
    if isinstance(obj, list):
        return [camel_case(v) if isinstance(v, dict | list) else v for v in obj]
    return obj


# -- AnyValue ------------------------------------------------------------------------------------
def from_any_value(value: Any) -> Any:
    """A Python value from an OTLP ``AnyValue`` object."""
    if not isinstance(value, dict) or not value:
        return None
    if "stringValue" in value:
        return str(value["stringValue"])
    if "boolValue" in value:
        v = value["boolValue"]
        return v if isinstance(v, bool) else str(v).lower() == "true"
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [from_any_value(v) for v in (value["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in value:
        return attributes_from_otlp((value["kvlistValue"] or {}).get("values", []))
    if "bytesValue" in value:
        return str(value["bytesValue"])
    return None


def to_any_value(value: Any) -> dict[str, Any]:
    """An OTLP ``AnyValue`` object for a Python value (int64 as a string, as proto3 JSON says)."""
    if type(value) is str:  # captured values are safe reprs: by far the most common case
        return {"stringValue": value}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        # proto3 JSON spells non-finite doubles as strings.
        return {"doubleValue": value if math.isfinite(value) else _NON_FINITE[str(value)]}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [to_any_value(v) for v in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": attributes_to_otlp(value)}}
    if value is None:
        return {}
    return {"stringValue": str(value)}


def attributes_from_otlp(items: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for kv in items or ():
        if not isinstance(kv, dict):
            continue
        value = kv.get("value")
        # Captured values are strings: read those without a call each (a million-span import).
        attributes[str(kv.get("key", ""))] = (
            str(value["stringValue"])
            if type(value) is dict and "stringValue" in value
            else from_any_value(value)
        )
    return attributes


def attributes_to_otlp(attributes: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": to_any_value(v)} for k, v in attributes.items()]


# -- reading -------------------------------------------------------------------------------------
def _kind(value: Any) -> str:
    if isinstance(value, str) and not value.isdigit():
        name = value.upper().removeprefix("SPAN_KIND_")
        return name if name in SPAN_KINDS else "INTERNAL"
    number = int(value or 0)
    return SPAN_KINDS[number - 1] if 1 <= number <= len(SPAN_KINDS) else "INTERNAL"


def _status(value: Any) -> str:
    if isinstance(value, str) and not value.isdigit():
        name = value.upper().removeprefix("STATUS_CODE_")
        return name if name in STATUS_CODES else "UNSET"
    number = int(value or 0)
    return STATUS_CODES[number] if 0 <= number < len(STATUS_CODES) else "UNSET"


def spans_from_otlp(document: dict[str, Any]) -> list[SpanRecord]:
    """Every span of an OTLP JSON document (``resourceSpans``, or Tempo v1's ``batches``)."""
    doc = camel_case(document)
    resource_spans = doc.get("resourceSpans", doc.get("batches"))
    if not isinstance(resource_spans, list):
        raise SourceError("no 'resourceSpans' list: not an OTLP JSON trace")
    spans: list[SpanRecord] = []
    try:
        for rs in resource_spans:
            resource = attributes_from_otlp((rs.get("resource") or {}).get("attributes"))
            # instrumentationLibrarySpans is the pre-1.0 name that old Tempo versions still return.
            for ss in rs.get("scopeSpans", rs.get("instrumentationLibrarySpans")) or []:
                for s in ss.get("spans") or []:
                    spans.append(span_from_otlp(s, resource))
    except (AttributeError, TypeError, ValueError) as exc:
        raise SourceError(f"malformed OTLP JSON span ({type(exc).__name__}: {exc})") from None
    return spans


def span_from_otlp(s: dict[str, Any], resource: dict[str, Any]) -> SpanRecord:
    status = s.get("status") or {}
    start = int(s.get("startTimeUnixNano") or 0)
    return SpanRecord(
        trace_id=normalize_id(s.get("traceId"), 16),
        span_id=normalize_id(s.get("spanId"), 8),
        parent_span_id=normalize_id(s.get("parentSpanId"), 8) or None,
        name=str(s.get("name", "")),
        kind=_kind(s.get("kind")),
        start_ns=start,
        end_ns=int(s.get("endTimeUnixNano") or start),
        attributes=attributes_from_otlp(s.get("attributes")),
        events=[
            EventRecord(
                str(e.get("name", "")),
                int(e.get("timeUnixNano") or 0),
                attributes_from_otlp(e.get("attributes")),
            )
            for e in s.get("events") or []
        ],
        links=[
            LinkRecord(
                normalize_id(x.get("traceId"), 16),
                normalize_id(x.get("spanId"), 8),
                attributes_from_otlp(x.get("attributes")),
            )
            for x in s.get("links") or []
        ],
        status_code=_status(status.get("code")),
        status_message=str(status.get("message", "")),
        resource=resource,
        dropped_events_count=int(s.get("droppedEventsCount") or 0),
    )


# -- writing -------------------------------------------------------------------------------------
def to_otlp_json(trace: TraceData) -> dict[str, Any]:
    """The trace as an OTLP JSON ``TracesData`` document: what Jaeger's upload page, the OTLP file
    exporter and ``otel-scope import`` all read."""
    groups: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for span in trace.spans:
        key = json.dumps(span.resource, sort_keys=True, default=str)
        groups.setdefault(key, (span.resource, []))[1].append(span_to_otlp(span))
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": attributes_to_otlp(resource)},
                "scopeSpans": [{"scope": {}, "spans": spans}],
            }
            for resource, spans in groups.values()
        ]
    }


def span_to_otlp(span: SpanRecord) -> dict[str, Any]:
    """The span as an OTLP JSON object (:func:`span_to_otlp_json`, parsed)."""
    parsed: dict[str, Any] = json.loads(span_to_otlp_json(span))
    return parsed


# What json's encoder writes for a string (ensure_ascii off), and for anything else.
_string: Callable[[str], str] = json.encoder.encode_basestring
_encode = json.JSONEncoder(ensure_ascii=False, default=str).encode


def _attributes_json(attributes: dict[str, Any]) -> str:
    # Captured values are strings: written straight, without an AnyValue object each.
    return (
        "["
        + ", ".join(
            f'{{"key": {_string(k)}, "value": {{"stringValue": {_string(v)}}}}}'
            if type(v) is str
            else f'{{"key": {_string(k)}, "value": {_encode(to_any_value(v))}}}'
            for k, v in attributes.items()
        )
        + "]"
    )


def span_to_otlp_json(span: SpanRecord) -> str:
    """The span as OTLP JSON text, written directly: building the objects for the encoder was
    most of the time a million-span export took. The text is what ``json.dumps`` (ensure_ascii
    off) of the OTLP object gives."""
    parent = f'"parentSpanId": {_string(span.parent_span_id)}, ' if span.parent_span_id else ""
    kind = SPAN_KINDS.index(span.kind) + 1 if span.kind in SPAN_KINDS else 1
    code = STATUS_CODES.index(span.status_code) if span.status_code in STATUS_CODES else 0
    message = f', "message": {_string(span.status_message)}' if span.status_message else ""
    events = ", ".join(
        f'{{"timeUnixNano": {_string(str(e.time_ns))}, "name": {_string(e.name)}, '
        f'"attributes": {_attributes_json(e.attributes)}}}'
        for e in span.events
    )
    links = ", ".join(
        f'{{"traceId": {_string(x.trace_id)}, "spanId": {_string(x.span_id)}, '
        f'"attributes": {_attributes_json(x.attributes)}}}'
        for x in span.links
    )
    dropped = f', "droppedEventsCount": {span.dropped_events_count}' if span.dropped_events_count else ""
    return (
        f'{{"traceId": {_string(span.trace_id)}, "spanId": {_string(span.span_id)}, {parent}'
        f'"name": {_string(span.name)}, "kind": {kind}, "startTimeUnixNano": {_string(str(span.start_ns))}, '
        f'"endTimeUnixNano": {_string(str(span.end_ns))}, "attributes": {_attributes_json(span.attributes)}, '
        f'"events": [{events}], "links": [{links}], "status": {{"code": {code}{message}}}{dropped}}}'
    )
