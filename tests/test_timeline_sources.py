"""Trace sources: Jaeger and Tempo over real HTTP on 127.0.0.1, trace files, and the writers.

The backend answers are built in the shapes their source code and docs give: Jaeger's v3
``{"result": {"resourceSpans": ...}}`` (hex IDs, integer enums, int64 as strings; see
``apiv3/snapshots/GetTrace.json``), Jaeger's legacy ``{"data": [...]}`` (``uimodel/model.go``,
``converter/v1/json/fixtures/ui_01.json``), Tempo v2 ``{"trace": ..., "status": ...}`` and Tempo
v1 ``{"batches": ...}`` with base64 IDs.
"""

from __future__ import annotations

import base64
import copy
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from otel_scope import semconv as sc
from otel_scope.store import record_from_span
from otel_scope.store.records import EventRecord, LinkRecord, SpanRecord
from otel_scope.timeline import (
    FileSource,
    JaegerSource,
    SourceError,
    TempoSource,
    TraceData,
    TraceNotFound,
    to_jaeger_json,
    to_otlp_json,
)
from otel_scope.timeline.otlp_json import normalize_id, span_from_otlp, span_to_otlp, span_to_otlp_json
from test_timeline_sample import HANDLE, RECEIVE, sample_spans


class Backend:
    """A stdlib HTTP server on 127.0.0.1 answering fixed routes, recording what was asked."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, str, bytes]] = {}
        self.requests: list[str] = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                backend.requests.append(self.path)
                path = self.path.split("?", 1)[0]
                status, kind, body = backend.routes.get(path, (404, "text/plain", b"404 page not found\n"))
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()

    def json(self, path: str, body: Any, status: int = 200) -> None:
        self.routes[path] = (status, "application/json", json.dumps(body).encode())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def backend() -> Iterator[Backend]:
    server = Backend()
    yield server
    server.close()


@pytest.fixture
def sample() -> TraceData:
    trace_id, spans = sample_spans()
    return TraceData(trace_id, [record_from_span(s) for s in spans])


def _by_id(trace: TraceData) -> list:
    return sorted(trace.spans, key=lambda s: s.span_id)


def _b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def _base64_ids(document: dict[str, Any]) -> dict[str, Any]:
    """An OTLP JSON document with base64 IDs, as Tempo's v1 API and MessageToDict emit them."""
    doc = copy.deepcopy(document)
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = _b64(span[key])
                for link in span["links"]:
                    link["traceId"], link["spanId"] = _b64(link["traceId"]), _b64(link["spanId"])
    return doc


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- Jaeger --------------------------------------------------------------------------------------
def test_jaeger_v3_answer_gives_the_same_trace(backend: Backend, sample: TraceData) -> None:
    backend.json(f"/api/v3/traces/{sample.trace_id}", {"result": to_otlp_json(sample)})
    trace = JaegerSource(backend.url).get_trace(sample.trace_id)
    assert _by_id(trace) == _by_id(sample)
    assert backend.requests == [f"/api/v3/traces/{sample.trace_id}"]


def test_jaeger_v3_snapshot_shape_is_understood(backend: Backend) -> None:
    # cmd/jaeger/internal/extension/jaegerquery/internal/apiv3/snapshots/GetTrace.json
    snapshot = {
        "result": {
            "resourceSpans": [
                {
                    "resource": {},
                    "scopeSpans": [
                        {
                            "scope": {},
                            "spans": [
                                {
                                    "kind": 2,
                                    "name": "foobar",
                                    "spanId": "0000000000000002",
                                    "status": {"code": 2},
                                    "traceId": "00000000000000000000000000000001",
                                }
                            ],
                        }
                    ],
                }
            ]
        }
    }
    backend.json("/api/v3/traces/00000000000000000000000000000001", snapshot)
    (span,) = JaegerSource(backend.url).get_trace("1").spans
    assert (span.name, span.kind, span.status_code, span.span_id) == (
        "foobar",
        "SERVER",
        "ERROR",
        "0000000000000002",
    )
    assert span.parent_span_id is None


def test_jaeger_without_v3_falls_back_to_the_legacy_api(backend: Backend, sample: TraceData) -> None:
    backend.json(f"/api/traces/{sample.trace_id}", to_jaeger_json(sample))
    trace = JaegerSource(backend.url + "/").get_trace(sample.trace_id)
    assert [s.span_id for s in _by_id(trace)] == [s.span_id for s in _by_id(sample)]
    assert backend.requests == [f"/api/v3/traces/{sample.trace_id}", f"/api/traces/{sample.trace_id}"]


def test_jaeger_legacy_fixture_maps_references_tags_logs_and_processes(backend: Backend) -> None:
    # Adapted from jaeger internal/uimodel/converter/v1/json/fixtures/ui_01.json.
    tid = "00000000000000000000000000000001"
    legacy = {
        "data": [
            {
                "traceID": tid,
                "spans": [
                    {
                        "traceID": tid,
                        "spanID": "0000000000000002",
                        "operationName": "test-general-conversion",
                        "references": [],
                        "startTime": 1485467191639875,
                        "duration": 5,
                        "tags": [
                            {"key": "peer.ipv4", "type": "int64", "value": 23456},
                            {"key": "error", "type": "bool", "value": True},
                            {"key": "temperature", "type": "float64", "value": 72.5},
                            {"key": "javascript_limit", "type": "int64", "value": "9223372036854775222"},
                            {"key": "span.kind", "type": "string", "value": "server"},
                        ],
                        "logs": [
                            {
                                "timestamp": 1485467191639875,
                                "fields": [{"key": "event", "type": "string", "value": "some-event"}],
                            },
                            {
                                "timestamp": 1485467191639876,
                                "fields": [{"key": "x", "type": "string", "value": "y"}],
                            },
                        ],
                        "processID": "p1",
                        "warnings": None,
                    },
                    {
                        "traceID": tid,
                        "spanID": "0000000000000004",
                        "operationName": "reference-test",
                        "references": [
                            {
                                "refType": "CHILD_OF",
                                "traceID": "000000000000000000000000000000ff",
                                "spanID": "00000000000000ff",
                            },
                            {"refType": "CHILD_OF", "traceID": tid, "spanID": "0000000000000002"},
                            {"refType": "FOLLOWS_FROM", "traceID": tid, "spanID": "0000000000000002"},
                        ],
                        "startTime": 1485467191639875,
                        "duration": 5,
                        "tags": [],
                        "logs": [],
                        "processID": "p2",
                        "warnings": ["some span warning"],
                    },
                ],
                "processes": {
                    "p1": {"serviceName": "service-x", "tags": []},
                    "p2": {
                        "serviceName": "service-y",
                        "tags": [{"key": "hostname", "type": "string", "value": "h"}],
                    },
                },
                "warnings": ["some trace warning"],
            }
        ],
        "total": 0,
        "limit": 0,
        "offset": 0,
        "errors": None,
    }
    backend.json(f"/api/traces/{tid}", legacy)
    trace = JaegerSource(backend.url).get_trace(tid)
    first, second = trace.spans
    assert first.attributes == {
        "peer.ipv4": 23456,
        "temperature": 72.5,
        "javascript_limit": 9223372036854775222,
    }
    assert (first.kind, first.status_code) == ("SERVER", "ERROR")
    assert [(e.name, e.time_ns, e.attributes) for e in first.events] == [
        ("some-event", 1485467191639875000, {}),
        ("log", 1485467191639876000, {"x": "y"}),
    ]
    assert first.end_ns - first.start_ns == 5000
    assert second.parent_span_id == "0000000000000002"
    assert [(x.trace_id[-2:], x.span_id[-2:]) for x in second.links] == [("ff", "ff"), ("01", "02")]
    assert first.resource == {"service.name": "service-x"}
    assert second.resource == {"service.name": "service-y", "hostname": "h"}
    assert trace.warnings == ["some trace warning"]


def test_jaeger_unknown_trace_is_trace_not_found_naming_url_and_id(backend: Backend) -> None:
    backend.json(
        "/api/v3/traces/" + "a" * 32, {"error": {"httpCode": 404, "message": "trace not found"}}, 404
    )
    backend.json(
        "/api/traces/" + "a" * 32, {"data": None, "errors": [{"code": 404, "msg": "trace not found"}]}, 404
    )
    with pytest.raises(TraceNotFound) as info:
        JaegerSource(backend.url).get_trace("a" * 32)
    message = str(info.value)
    assert backend.url in message and "a" * 32 in message and "\n" not in message


def test_jaeger_server_error_is_a_source_error_with_the_status(backend: Backend) -> None:
    backend.routes["/api/traces/" + "b" * 32] = (503, "text/plain", b"storage unavailable")
    with pytest.raises(SourceError, match="HTTP 503"):
        JaegerSource(backend.url).get_trace("b" * 32)


def test_unreachable_jaeger_is_a_source_error_naming_the_url() -> None:
    url = _closed_port_url()
    with pytest.raises(SourceError) as info:
        JaegerSource(url, timeout=5).get_trace("c" * 32)
    assert not isinstance(info.value, TraceNotFound)
    assert url in str(info.value) and "16686" in str(info.value)


def test_jaeger_last_trace_is_the_latest_across_services(backend: Backend, sample: TraceData) -> None:
    later_id, later_spans = sample_spans(base_us=60_000_000)
    later = TraceData(later_id, [record_from_span(s) for s in later_spans])
    backend.json("/api/services", {"data": ["jaeger", "shop", "other"], "total": 3})
    backend.json("/api/traces", {"data": to_jaeger_json(sample)["data"] + to_jaeger_json(later)["data"]})
    assert JaegerSource(backend.url).last_trace_id() == later_id
    assert not any("service=jaeger&" in r for r in backend.requests)


# -- Tempo ---------------------------------------------------------------------------------------
def test_tempo_v2_answer_gives_the_same_trace(backend: Backend, sample: TraceData) -> None:
    backend.json(f"/api/v2/traces/{sample.trace_id}", {"trace": to_otlp_json(sample), "status": "COMPLETE"})
    trace = TempoSource(backend.url).get_trace(sample.trace_id)
    assert _by_id(trace) == _by_id(sample)
    assert trace.warnings == []


def test_tempo_partial_answer_is_shown_as_a_warning(backend: Backend, sample: TraceData) -> None:
    body = {"trace": to_otlp_json(sample), "status": "PARTIAL", "message": "2 blocks timed out"}
    backend.json(f"/api/v2/traces/{sample.trace_id}", body)
    trace = TempoSource(backend.url).get_trace(sample.trace_id)
    assert trace.warnings == ["Tempo returned a partial trace: 2 blocks timed out"]


def test_tempo_v1_base64_ids_are_normalised_to_hex(backend: Backend, sample: TraceData) -> None:
    document = _base64_ids(to_otlp_json(sample))
    backend.json(f"/api/traces/{sample.trace_id}", {"batches": document["resourceSpans"]})
    trace = TempoSource(backend.url).get_trace(sample.trace_id)
    assert _by_id(trace) == _by_id(sample)
    assert backend.requests[0] == f"/api/v2/traces/{sample.trace_id}"


def test_tempo_unknown_trace_is_trace_not_found(backend: Backend) -> None:
    with pytest.raises(TraceNotFound, match=r"not found in Tempo at http://127\.0\.0\.1"):
        TempoSource(backend.url).get_trace("d" * 32)


def test_unreachable_tempo_is_a_source_error_naming_the_url() -> None:
    url = _closed_port_url()
    with pytest.raises(SourceError, match="cannot reach Tempo at " + url):
        TempoSource(url, timeout=5).get_trace("e" * 32)


def test_tempo_last_trace_comes_from_search_and_restores_leading_zeros(backend: Backend) -> None:
    backend.json(
        "/api/search",
        {
            "traces": [
                {"traceID": "2f3e0cee77ae5dc9c17ade3689eb2e54", "startTimeUnixNano": "1684778327699392724"},
                {"traceID": "fe0cee77ae5dc9c17ade3689eb2e54", "startTimeUnixNano": "1684778327799392724"},
            ]
        },
    )
    assert TempoSource(backend.url).last_trace_id() == "00fe0cee77ae5dc9c17ade3689eb2e54"


# -- files -----------------------------------------------------------------------------------------
def test_otlp_json_round_trip_is_exact(tmp_path: Path, sample: TraceData) -> None:
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(to_otlp_json(sample)))
    trace = FileSource(path).get_trace(sample.trace_id)
    assert _by_id(trace) == _by_id(sample)


def test_a_span_written_as_otlp_json_text_reads_back_with_every_kind_of_value() -> None:
    values: dict[str, Any] = {
        "text": "say \"hi\"\\ \u00e9\u4e2d\n", "int": -7, "big": 2**62, "float": 2.5, "nan": float("nan"),
        "inf": float("-inf"), "yes": True, "no": False, "list": ["a", 1, 1.5, True], "empty": [],
        "map": {"k": "v", "n": 1},
    }  # fmt: skip
    span = SpanRecord(
        "ab" * 16, "cd" * 8, "ef" * 8, "q\"uote", kind="CONSUMER", start_ns=1, end_ns=2**62,
        attributes=values, events=[EventRecord("ev\u00e9", 5, {"x": "1"})],
        links=[LinkRecord("01" * 16, "02" * 8, {"y": 2})], status_code="ERROR", status_message="bad \"x\"",
        resource={"service.name": "s"}, dropped_events_count=3,
    )  # fmt: skip
    text = span_to_otlp_json(span)
    assert json.loads(text) == span_to_otlp(span)  # one valid JSON object
    back = span_from_otlp(json.loads(text), {"service.name": "s"})
    assert back.attributes.pop("nan") != back.attributes.pop("inf")  # NaN is unequal even to itself
    assert back == SpanRecord(**{**span.__dict__, "attributes": {k: v for k, v in values.items()
                                                                 if k not in ("nan", "inf")}})  # fmt: skip


def test_otlp_json_uses_hex_ids_string_times_and_anyvalues(sample: TraceData) -> None:
    document = to_otlp_json(sample)
    spans = {s["name"]: s for rs in document["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]}
    handle = spans[HANDLE]
    assert handle["traceId"] == sample.trace_id and len(handle["spanId"]) == 16
    assert handle["startTimeUnixNano"].isdigit()
    attributes = {kv["key"]: kv["value"] for kv in handle["attributes"]}
    assert attributes[sc.CAPTURES_DROPPED] == {"intValue": "2"}
    assert attributes[sc.CODE_FUNCTION_NAME] == {"stringValue": HANDLE}
    assert spans["GET /prices"]["kind"] == 3
    assert spans["shop.pricing.quote"]["status"] == {"code": 2, "message": "ValueError: no price for itemA"}


def test_jaeger_json_round_trip_keeps_spans_and_identical_events(tmp_path: Path, sample: TraceData) -> None:
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(to_jaeger_json(sample)))
    trace = FileSource(path).get_trace(sample.trace_id)
    for got, want in zip(_by_id(trace), _by_id(sample), strict=True):
        assert got.events == want.events  # the sample's times are whole microseconds
        assert (got.span_id, got.parent_span_id, got.name, got.kind) == (
            want.span_id,
            want.parent_span_id,
            want.name,
            want.kind,
        )
        assert (got.start_ns, got.end_ns, got.attributes, got.resource) == (
            want.start_ns,
            want.end_ns,
            want.attributes,
            want.resource,
        )
        assert (got.status_code, got.status_message) == (want.status_code, want.status_message)
        # Jaeger references carry no attributes, so links keep only their target.
        assert [(x.trace_id, x.span_id) for x in got.links] == [(x.trace_id, x.span_id) for x in want.links]


def test_jaeger_json_has_the_legacy_shape_the_ui_opens(sample: TraceData) -> None:
    document = to_jaeger_json(sample)
    (trace,) = document["data"]
    spans = {s["operationName"]: s for s in trace["spans"]}
    handle = spans[HANDLE]
    assert handle["references"][0]["refType"] == "CHILD_OF"
    assert handle["references"][1] == {
        "refType": "FOLLOWS_FROM",
        "traceID": sample.trace_id,
        "spanID": spans[RECEIVE]["spanID"],
    }
    assert handle["startTime"] == sample.start_ns // 1000 + 2000 and handle["duration"] == 1000
    assert handle["logs"][1]["fields"][0] == {"key": "event", "type": "string", "value": sc.EVENT_LOCALS}
    assert {"key": "otel_scope.captures.dropped", "type": "int64", "value": 2} in handle["tags"]
    assert trace["processes"][handle["processID"]]["serviceName"] == "shop"


def test_otlp_jsonl_lines_of_one_trace_are_merged(tmp_path: Path, sample: TraceData) -> None:
    half = len(sample.spans) // 2
    lines = [
        to_otlp_json(TraceData(sample.trace_id, sample.spans[:half])),
        to_otlp_json(TraceData(sample.trace_id, sample.spans[half:])),
    ]
    path = tmp_path / "spans.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    source = FileSource(path)
    assert len(source.traces) == 1
    assert _by_id(source.get_trace(sample.trace_id)) == _by_id(sample)
    assert source.last_trace_id() == sample.trace_id


def test_protobuf_json_with_base64_ids_reads_as_hex(tmp_path: Path) -> None:
    trace_id, spans = sample_spans()
    document = MessageToDict(encode_spans(spans))  # what naive Python OTLP JSON writers produce
    path = tmp_path / "proto.json"
    path.write_text(json.dumps(document))
    trace = FileSource(path).get_trace(trace_id[:8])
    assert _by_id(trace) == sorted((record_from_span(s) for s in spans), key=lambda s: s.span_id)


def test_snake_case_field_names_are_accepted(tmp_path: Path) -> None:
    trace_id, spans = sample_spans()
    document = MessageToDict(encode_spans(spans), preserving_proto_field_name=True)
    assert "resource_spans" in document
    path = tmp_path / "snake.json"
    path.write_text(json.dumps(document))
    assert len(FileSource(path).get_trace(trace_id).spans) == 6


def test_a_file_with_several_traces_selects_by_prefix(tmp_path: Path, sample: TraceData) -> None:
    other_id, other_spans = sample_spans(base_us=1_000)
    other = TraceData(other_id, [record_from_span(s) for s in other_spans])
    path = tmp_path / "two.json"
    path.write_text(json.dumps(to_jaeger_json(sample)["data"] + to_jaeger_json(other)["data"]))  # bare list
    source = FileSource(path)
    assert {t.trace_id for t in source.traces} == {sample.trace_id, other_id}
    assert source.get_trace(other_id[:10]).trace_id == other_id
    assert source.last_trace_id() == other_id
    with pytest.raises(TraceNotFound, match=str(path)):
        source.get_trace("0" * 32 if not sample.trace_id.startswith("0") else "f" * 32)


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ('{"resourceSpans": [', "line 1 is not JSON"),
        ('{"hello": "world"}', "neither OTLP JSON"),
        (
            '{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz", "spanId": "1"}]}]}]}',
            "not a 128-bit ID",
        ),
        ('{"data": []}', "holds no spans"),
        ('{"data": [{"traceID": "1"}]}', "needs a 'spans' list"),
    ],
)
def test_malformed_files_are_one_line_source_errors_naming_the_file(
    tmp_path: Path, content: str, complaint: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(SourceError) as info:
        FileSource(path)
    assert str(path) in str(info.value) and complaint in str(info.value) and "\n" not in str(info.value)


def test_a_missing_file_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot read"):
        FileSource(tmp_path / "nope.json")


@pytest.mark.parametrize(
    ("value", "size", "expected"),
    [
        ("0AF7651916CD43DD8448EB211C80319C", 16, "0af7651916cd43dd8448eb211c80319c"),
        ("CvdlGRbNQ92ESOshHIAxnA==", 16, "0af7651916cd43dd8448eb211c80319c"),
        ("CvdlGRbNQ92ESOshHIAxnA", 16, "0af7651916cd43dd8448eb211c80319c"),
        ("b7ad6b7169203331", 8, "b7ad6b7169203331"),
        ("t61rcWkgMzE=", 8, "b7ad6b7169203331"),
        ("abc", 8, "0000000000000abc"),
        ("", 8, ""),
    ],
)
def test_ids_in_hex_base64_or_trimmed_hex_normalise_to_hex(value: str, size: int, expected: str) -> None:
    assert normalize_id(value, size) == expected
