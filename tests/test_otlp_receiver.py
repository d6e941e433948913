"""The OTLP test receiver, proven with the real OTLP exporters over gRPC and HTTP.

Every other test that checks "what reached the backend" trusts this receiver, so these tests use
the genuine ``opentelemetry-exporter-otlp-proto-grpc`` and ``-http`` exporters (not hand-made
requests) wherever the SDK has one, and check each field a test may later assert on.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from otlp_receiver import OtlpReceiver, ReceivedSpan, spans_by_id

PROTOCOLS = ("grpc", "http")


def make_exporter(receiver: OtlpReceiver, protocol: str, **kwargs: Any) -> SpanExporter:
    """A real OTLP exporter aimed explicitly at ``receiver`` (explicit, so no env var can divert it)."""
    if protocol == "grpc":
        return GrpcSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True, **kwargs)
    return HttpSpanExporter(endpoint=receiver.http_traces_url, **kwargs)


@contextmanager
def tracer_provider(
    exporter: SpanExporter, *, batch: bool = False, limits: SpanLimits | None = None
) -> Iterator[TracerProvider]:
    """A private provider (the global one is left alone so tests cannot leak into each other)."""
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": "otlp-receiver-test", "deployment.environment.name": "test"}
        ),
        span_limits=limits,
    )
    processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    try:
        yield provider
    finally:
        provider.shutdown()


def one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    matches = [span for span in spans if span.name == name]
    assert len(matches) == 1, f"expected one span {name!r}, got {[s.name for s in spans]}"
    return matches[0]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_real_exporter_delivers_spans_with_attributes_events_links_and_status(
    otlp_receiver: OtlpReceiver, protocol: str
) -> None:
    with tracer_provider(make_exporter(otlp_receiver, protocol)) as provider:
        tracer = provider.get_tracer("otel_scope.tests", "1.2.3")
        with tracer.start_as_current_span("linked-from") as other:
            other_context = other.get_span_context()
        with tracer.start_as_current_span("parent", kind=SpanKind.SERVER) as parent:
            with tracer.start_as_current_span(
                "child", links=[Link(other_context, {"link.reason": "follows"})]
            ) as child:
                child.set_attribute("otel_scope.mechanism", "runtime")
                child.set_attribute("count", 3)
                child.set_attribute("ratio", 0.5)
                child.set_attribute("flag", True)
                child.set_attribute("names", ["a", "b"])
                child.set_attribute("numbers", [1, 2, 3])
                child.add_event(
                    "otel_scope.locals",
                    {"otel_scope.var.total": "42", "otel_scope.var.total.type": "int", "otel_scope.hit": 1},
                    timestamp=1_700_000_000_000_000_123,
                )
                child.add_event("otel_scope.line", {"code.line.number": 15})
                child.set_status(Status(StatusCode.ERROR, "boom"))

    spans = otlp_receiver.wait_for(lambda s: {"linked-from", "parent", "child"} <= {x.name for x in s})
    parent_span, child_span, other_span = one(spans, "parent"), one(spans, "child"), one(spans, "linked-from")

    assert child_span.trace_id == parent_span.trace_id == format(parent.get_span_context().trace_id, "032x")
    assert child_span.span_id == format(child.get_span_context().span_id, "016x")
    assert child_span.parent_span_id == parent_span.span_id
    assert parent_span.parent_span_id == "" and parent_span.is_root
    assert parent_span.kind == SpanKind.SERVER.name and child_span.kind == SpanKind.INTERNAL.name
    assert child_span.attributes == {
        "otel_scope.mechanism": "runtime",
        "count": 3,
        "ratio": 0.5,
        "flag": True,
        "names": ["a", "b"],
        "numbers": [1, 2, 3],
    }
    assert [event.name for event in child_span.events] == ["otel_scope.locals", "otel_scope.line"]
    locals_event = child_span.events_named("otel_scope.locals")[0]
    assert locals_event.time_ns == 1_700_000_000_000_000_123
    assert locals_event.attributes == {
        "otel_scope.var.total": "42",
        "otel_scope.var.total.type": "int",
        "otel_scope.hit": 1,
    }
    assert child_span.events[1].attributes == {"code.line.number": 15}
    assert [(link.trace_id, link.span_id, link.attributes) for link in child_span.links] == [
        (other_span.trace_id, other_span.span_id, {"link.reason": "follows"})
    ]
    assert child_span.status_code == StatusCode.ERROR.name and child_span.status_message == "boom"
    assert parent_span.status_code == StatusCode.UNSET.name
    assert child_span.dropped_events_count == 0
    assert child_span.resource_attributes["service.name"] == "otlp-receiver-test"
    assert child_span.resource_attributes["deployment.environment.name"] == "test"
    assert (child_span.scope_name, child_span.scope_version) == ("otel_scope.tests", "1.2.3")
    assert 0 < child_span.start_time_ns <= child_span.end_time_ns and child_span.duration_ns >= 0
    assert {span.protocol for span in spans} == {protocol}
    assert spans_by_id(spans)[child_span.parent_span_id] is parent_span


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_batch_processor_force_flush_delivers_every_span(otlp_receiver: OtlpReceiver, protocol: str) -> None:
    with tracer_provider(make_exporter(otlp_receiver, protocol), batch=True) as provider:
        tracer = provider.get_tracer(__name__)
        for index in range(50):
            with tracer.start_as_current_span(f"work-{index}"):
                pass
        assert provider.force_flush(10_000)
        # force_flush returned, so everything is already here: no waiting involved.
        assert sorted(span.name for span in otlp_receiver.spans()) == sorted(f"work-{i}" for i in range(50))


@pytest.mark.parametrize("compression", [Compression.Gzip, Compression.Deflate])
def test_http_exporter_compressed_bodies_are_decoded(
    otlp_receiver: OtlpReceiver, compression: Compression
) -> None:
    with tracer_provider(make_exporter(otlp_receiver, "http", compression=compression)) as provider:
        provider.get_tracer(__name__).start_span("compressed").end()
    otlp_receiver.wait_for(lambda spans: any(s.name == "compressed" for s in spans))
    requests = otlp_receiver.requests()
    assert [(r.compression, r.encoding) for r in requests] == [(compression.value, "protobuf")]


def test_grpc_exporter_with_gzip_compression_is_received(otlp_receiver: OtlpReceiver) -> None:
    exporter = make_exporter(otlp_receiver, "grpc", compression=grpc.Compression.Gzip)
    with tracer_provider(exporter) as provider:
        provider.get_tracer(__name__).start_span("grpc-gzip").end()
    otlp_receiver.wait_for(lambda spans: any(s.name == "grpc-gzip" for s in spans))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_exporter_headers_are_recorded_with_the_request(otlp_receiver: OtlpReceiver, protocol: str) -> None:
    exporter = make_exporter(otlp_receiver, protocol, headers={"x-scope-tenant": "team-a"})
    with tracer_provider(exporter) as provider:
        provider.get_tracer(__name__).start_span("with-headers").end()
    otlp_receiver.wait_for_spans(1)
    (request,) = otlp_receiver.requests()
    assert request.protocol == protocol and request.span_count == 1 and not request.error
    assert request.headers["x-scope-tenant"] == "team-a"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_sdk_keeps_the_last_128_events_and_reports_the_dropped_count(
    otlp_receiver: OtlpReceiver, protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The documented default (docs/backends.md): beyond 128 events the OLDEST are lost."""
    monkeypatch.delenv("OTEL_SPAN_EVENT_COUNT_LIMIT", raising=False)
    with tracer_provider(make_exporter(otlp_receiver, protocol), limits=SpanLimits()) as provider:
        with provider.get_tracer(__name__).start_as_current_span("many-events") as span:
            for index in range(200):
                span.add_event("otel_scope.locals", {"otel_scope.hit": index})
    (received,) = otlp_receiver.wait_for_spans(1)
    assert len(received.events) == 128
    assert received.dropped_events_count == 72
    assert [e.attributes["otel_scope.hit"] for e in received.events] == list(range(72, 200))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_attribute_value_length_limit_truncates_event_attributes_on_the_wire(
    otlp_receiver: OtlpReceiver, protocol: str
) -> None:
    with tracer_provider(
        make_exporter(otlp_receiver, protocol), limits=SpanLimits(max_attribute_length=16)
    ) as provider:
        with provider.get_tracer(__name__).start_as_current_span("long-values") as span:
            span.add_event("otel_scope.locals", {"otel_scope.var.text": "x" * 100})
    (received,) = otlp_receiver.wait_for_spans(1)
    assert received.events[0].attributes["otel_scope.var.text"] == "x" * 16


def kv(key: str, value: dict[str, Any]) -> dict[str, Any]:
    """One OTLP/JSON KeyValue."""
    return {"key": key, "value": value}


def test_otlp_json_with_hex_ids_is_decoded_and_answered_in_json(otlp_receiver: OtlpReceiver) -> None:
    # The Python SDK has no OTLP/JSON exporter, so this body follows the OTLP spec by hand:
    # hex IDs, integer enums, 64-bit integers as strings, camelCase keys.
    span = {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "parentSpanId": "eee19b7ec3c1b173",
        "name": "json-span",
        "kind": 2,
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": "1544712661000000000",
        "attributes": [
            kv("n", {"intValue": "7"}),
            kv("ok", {"boolValue": True}),
            kv("xs", {"arrayValue": {"values": [{"stringValue": "a"}]}}),
            kv("m", {"kvlistValue": {"values": [kv("k", {"doubleValue": 1.5})]}}),
        ],
        "events": [
            {
                "timeUnixNano": "1544712660500000000",
                "name": "otel_scope.locals",
                "attributes": [kv("otel_scope.var.x", {"stringValue": "1"})],
            }
        ],
        "links": [{"traceId": "00" * 15 + "01", "spanId": "00" * 7 + "02"}],
        "status": {"code": 1},
        "someFutureField": "ignored, as the spec requires",
    }
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [kv("service.name", {"stringValue": "json-client"})]},
                "scopeSpans": [{"scope": {"name": "json-scope"}, "spans": [span]}],
            }
        ]
    }
    request = urllib.request.Request(
        otlp_receiver.http_traces_url,
        data=gzip.compress(json.dumps(body).encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
        json_format.Parse(response.read(), trace_service_pb2.ExportTraceServiceResponse())

    (received,) = otlp_receiver.spans()
    assert (received.trace_id, received.span_id, received.parent_span_id) == (
        "5b8efff798038103d269b633813fc60c",
        "eee19b7ec3c1b174",
        "eee19b7ec3c1b173",
    )
    assert received.kind == "SERVER" and received.status_code == "OK"
    assert received.start_time_ns == 1544712660000000000 and received.duration_ns == 1_000_000_000
    assert received.attributes == {"n": 7, "ok": True, "xs": ["a"], "m": {"k": 1.5}}
    assert received.events[0].name == "otel_scope.locals"
    assert received.events[0].attributes == {"otel_scope.var.x": "1"}
    assert (received.links[0].trace_id, received.links[0].span_id) == ("00" * 15 + "01", "00" * 7 + "02")
    assert received.resource_attributes == {"service.name": "json-client"}
    assert received.scope_name == "json-scope"
    assert otlp_receiver.requests()[0].encoding == "json"


@pytest.mark.parametrize(
    ("path", "content_type", "payload", "status"),
    [
        ("/v1/metrics", "application/x-protobuf", b"", 404),
        ("/v1/traces", "text/plain", b"hello", 415),
        ("/v1/traces", "application/x-protobuf", b"\xff\xff\xff not protobuf", 400),
        ("/v1/traces", "application/json", b"{not json", 400),
    ],
)
def test_bad_http_requests_are_rejected_and_recorded_without_spans(
    otlp_receiver: OtlpReceiver, path: str, content_type: str, payload: bytes, status: int
) -> None:
    url = otlp_receiver.http_endpoint + path
    request = urllib.request.Request(url, data=payload, headers={"Content-Type": content_type}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == status
    assert otlp_receiver.spans() == []
    (recorded,) = otlp_receiver.requests()
    assert recorded.error and recorded.span_count == 0
    assert "rejected http request" in otlp_receiver.summary()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_requests_over_the_size_limit_are_refused_like_a_default_collector(protocol: str) -> None:
    """The receiver keeps the Collector's walls (made small here so the test stays fast)."""
    limit = 64 * 1024
    with OtlpReceiver(grpc_max_receive_bytes=limit, http_max_body_bytes=limit) as receiver:
        with tracer_provider(make_exporter(receiver, protocol, timeout=1)) as provider:
            tracer = provider.get_tracer(__name__)
            tracer.start_span("too-big", attributes={"otel_scope.var.blob": "x" * (2 * limit)}).end()
            tracer.start_span("small").end()
        spans = receiver.wait_for(lambda s: any(x.name == "small" for x in s))
        # only this test's spans: a process another test left exporting may have been given this
        # port before (xdist runs tests side by side), and its spans say nothing about the limit
        assert [span.name for span in spans if span.name in ("too-big", "small")] == ["small"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_env_alone_makes_a_subprocess_export_here_within_the_short_batch_delay(
    otlp_receiver: OtlpReceiver, protocol: str
) -> None:
    """``env()`` is complete: a child that only reads the environment exports to the receiver.

    The child does not flush or exit until the span has arrived, so the span can only come from
    the batch processor's timer: with the SDK's 5 s default delay the 4 s wait would fail.
    """
    child = textwrap.dedent(
        """
        import os, sys
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        if os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        provider.get_tracer("child").start_span("from-subprocess").end()
        print("ended", flush=True)
        sys.stdin.read()  # until the parent has seen the span
        os._exit(0)  # no shutdown flush: the timer must already have exported it
        """
    )
    env = {**os.environ, **otlp_receiver.env(protocol), "OTEL_SERVICE_NAME": "child-app"}
    process = subprocess.Popen(
        [sys.executable, "-c", child],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ended"
        spans = otlp_receiver.wait_for(lambda s: any(x.name == "from-subprocess" for x in s), timeout=4)
    finally:
        _, stderr = process.communicate(input="", timeout=20)
    assert process.returncode == 0, stderr
    assert spans[0].protocol == protocol and spans[0].resource_attributes["service.name"] == "child-app"


def test_env_rejects_an_unknown_protocol(otlp_receiver: OtlpReceiver) -> None:
    with pytest.raises(ValueError, match="grpc"):
        otlp_receiver.env("http/json")  # type: ignore[arg-type]


def test_env_names_the_otlp_wire_protocols_and_endpoints(otlp_receiver: OtlpReceiver) -> None:
    grpc_env, http_env = otlp_receiver.env("grpc"), otlp_receiver.env("http", compression="gzip")
    assert grpc_env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    assert grpc_env["OTEL_EXPORTER_OTLP_ENDPOINT"] == otlp_receiver.grpc_endpoint
    assert http_env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert http_env["OTEL_EXPORTER_OTLP_ENDPOINT"] == otlp_receiver.http_endpoint
    assert http_env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == otlp_receiver.http_endpoint + "/v1/traces"
    assert http_env["OTEL_EXPORTER_OTLP_COMPRESSION"] == "gzip"
    assert grpc_env["OTEL_TRACES_EXPORTER"] == "otlp" and int(grpc_env["OTEL_BSP_SCHEDULE_DELAY"]) <= 500
    for endpoint in (otlp_receiver.grpc_endpoint, otlp_receiver.http_endpoint):
        assert endpoint.startswith("http://127.0.0.1:") and int(endpoint.rsplit(":", 1)[1]) > 0


def test_wait_for_timeout_says_what_did_arrive(otlp_receiver: OtlpReceiver) -> None:
    with tracer_provider(make_exporter(otlp_receiver, "grpc")) as provider:
        with provider.get_tracer(__name__).start_as_current_span("only-this") as span:
            span.add_event("otel_scope.locals")
    otlp_receiver.wait_for_spans(1)
    with pytest.raises(AssertionError) as caught:
        otlp_receiver.wait_for(lambda spans: any(s.name == "never" for s in spans), timeout=0.3)
    message = str(caught.value)
    assert "within 0.3s" in message and "'only-this'" in message and "otel_scope.locals×1" in message


def test_wait_for_timeout_with_nothing_received_says_so(otlp_receiver: OtlpReceiver) -> None:
    with pytest.raises(AssertionError, match="no export request reached"):
        otlp_receiver.wait_for_spans(1, timeout=0.1)


def test_concurrent_exports_over_both_protocols_are_all_recorded(otlp_receiver: OtlpReceiver) -> None:
    def send(protocol: str, worker: int) -> None:
        with tracer_provider(make_exporter(otlp_receiver, protocol)) as provider:
            tracer = provider.get_tracer(__name__)
            for index in range(20):
                tracer.start_span(f"{protocol}-{worker}-{index}").end()

    threads = [threading.Thread(target=send, args=(p, w)) for p in PROTOCOLS for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    spans = otlp_receiver.wait_for_spans(160)
    assert len({span.span_id for span in spans}) == len(spans) == 160
    assert sum(span.protocol == "grpc" for span in spans) == 80


def test_endpoints_need_a_running_receiver_and_stop_is_idempotent() -> None:
    receiver = OtlpReceiver()
    with pytest.raises(RuntimeError, match="not running"):
        _ = receiver.grpc_endpoint
    with receiver:
        with tracer_provider(make_exporter(receiver, "http")) as provider:
            provider.get_tracer(__name__).start_span("kept").end()
        receiver.wait_for_spans(1)
        with pytest.raises(RuntimeError, match="already running"):
            receiver.start()
    receiver.stop()
    assert not receiver.running and [span.name for span in receiver.spans()] == ["kept"]
    receiver.clear()
    assert receiver.spans() == [] and receiver.requests() == []
