"""A real OTLP trace receiver for tests: gRPC and HTTP, on 127.0.0.1, ephemeral ports.

Why a receiver and not an in-memory exporter: otel-scope's promise is "plain OTel data to any OTLP
collector". An in-memory exporter would skip the parts that break in the field: the OTLP
encoding, the exporter chosen from ``OTEL_EXPORTER_OTLP_*`` variables in a subprocess started by
``opentelemetry-instrument``, batching and flushing at exit, and the SDK limits applied on the
way out. This receiver speaks the wire protocol the Collector, Jaeger and Tempo speak, so a test
that passes against it exercises the same bytes a user's backend would get.

No real collector binary can run here (see ``shared/research/backends.md`` section 4), which is
why it is a fixture and not a container. It deliberately keeps the Collector's default request
limits (4 MiB per gRPC message, 20 MiB per HTTP body) so that tests of large captures meet the
same walls a default Collector would put up.

Usage::

    with OtlpReceiver() as receiver:
        env = {**os.environ, **receiver.env("http")}
        subprocess.run([sys.executable, "app.py"], env=env, check=True)
        spans = receiver.wait_for(lambda spans: any(s.name == "work" for s in spans))

Or use the ``otlp_receiver`` pytest fixture from ``tests/conftest.py``.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

__all__ = [
    "OtlpReceiver",
    "ReceivedEvent",
    "ReceivedLink",
    "ReceivedRequest",
    "ReceivedSpan",
    "spans_by_id",
]

Protocol = Literal["grpc", "http"]

TRACES_PATH = "/v1/traces"
# The Collector's defaults (grpc-go's 4 MiB; confighttp's 20 MiB): tests of big captures should hit
# the same limits a user's default Collector has, not a friendlier one.
DEFAULT_GRPC_MAX_RECEIVE_BYTES = 4 * 1024 * 1024
DEFAULT_HTTP_MAX_BODY_BYTES = 20 * 1024 * 1024

_PROTOBUF = "application/x-protobuf"
_JSON = "application/json"


# --- What a test sees -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedEvent:
    """One span event as it arrived (otel-scope's locals, lines, state changes, exceptions)."""

    name: str
    time_ns: int
    attributes: dict[str, Any]
    dropped_attributes_count: int = 0


@dataclass(frozen=True)
class ReceivedLink:
    """One span link; IDs are lowercase hex like everywhere else in otel-scope."""

    trace_id: str
    span_id: str
    attributes: dict[str, Any]
    trace_state: str = ""


@dataclass(frozen=True)
class ReceivedSpan:
    """One span, flattened out of its resource and scope, with plain Python values.

    IDs are lowercase hex (32 digits for traces, 16 for spans) because that is what the Jaeger
    link, the CLI and ``otel_scope.session.id`` use; ``parent_span_id`` is ``""`` for a root.
    ``kind`` and ``status_code`` are the enum member names without the proto prefix
    (``"INTERNAL"``, ``"SERVER"``, ...; ``"UNSET"``, ``"OK"``, ``"ERROR"``), so they compare with
    ``opentelemetry.trace.SpanKind.X.name`` and ``StatusCode.X.name``.
    """

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    start_time_ns: int
    end_time_ns: int
    attributes: dict[str, Any]
    events: list[ReceivedEvent]
    links: list[ReceivedLink]
    status_code: str
    status_message: str
    dropped_attributes_count: int
    dropped_events_count: int
    dropped_links_count: int
    resource_attributes: dict[str, Any]
    scope_name: str
    scope_version: str
    trace_state: str
    protocol: Protocol

    @property
    def duration_ns(self) -> int:
        return self.end_time_ns - self.start_time_ns

    @property
    def is_root(self) -> bool:
        return not self.parent_span_id

    def events_named(self, name: str) -> list[ReceivedEvent]:
        """The events called ``name``, in arrival order (which is the order they were recorded)."""
        return [event for event in self.events if event.name == name]


@dataclass(frozen=True)
class ReceivedRequest:
    """One export request, accepted or not: lets tests assert on transport details.

    ``headers`` are lowercased (HTTP headers or gRPC metadata) so tests can check that
    ``OTEL_EXPORTER_OTLP_HEADERS`` reached the wire; ``error`` is empty for accepted requests.
    """

    protocol: Protocol
    encoding: str  # "protobuf" or "json"
    compression: str  # "", "gzip" or "deflate" (HTTP only; gRPC decompresses transparently)
    headers: dict[str, str]
    span_count: int
    error: str = ""


# --- Decoding ---------------------------------------------------------------------------------


def _any_value(value: common_pb2.AnyValue) -> Any:
    """An OTLP AnyValue as the Python value a test would write in an assertion."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_any_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, which)


def _attributes(pairs: Iterable[common_pb2.KeyValue]) -> dict[str, Any]:
    return {pair.key: _any_value(pair.value) for pair in pairs}


def _enum_name(enum: Any, number: int, prefix: str) -> str:
    try:
        return enum.Name(number).removeprefix(prefix)
    except ValueError:  # a newer sender's enum value: keep it visible rather than fail the export
        return str(number)


def flatten(request: trace_service_pb2.ExportTraceServiceRequest, protocol: Protocol) -> list[ReceivedSpan]:
    """Every span of ``request``, each carrying its resource's and scope's identity."""
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        name=span.name,
                        kind=_enum_name(trace_pb2.Span.SpanKind, span.kind, "SPAN_KIND_"),
                        start_time_ns=span.start_time_unix_nano,
                        end_time_ns=span.end_time_unix_nano,
                        attributes=_attributes(span.attributes),
                        events=[
                            ReceivedEvent(
                                name=event.name,
                                time_ns=event.time_unix_nano,
                                attributes=_attributes(event.attributes),
                                dropped_attributes_count=event.dropped_attributes_count,
                            )
                            for event in span.events
                        ],
                        links=[
                            ReceivedLink(
                                trace_id=link.trace_id.hex(),
                                span_id=link.span_id.hex(),
                                attributes=_attributes(link.attributes),
                                trace_state=link.trace_state,
                            )
                            for link in span.links
                        ],
                        status_code=_enum_name(trace_pb2.Status.StatusCode, span.status.code, "STATUS_CODE_"),
                        status_message=span.status.message,
                        dropped_attributes_count=span.dropped_attributes_count,
                        dropped_events_count=span.dropped_events_count,
                        dropped_links_count=span.dropped_links_count,
                        resource_attributes=dict(resource),
                        scope_name=scope_spans.scope.name,
                        scope_version=scope_spans.scope.version,
                        trace_state=span.trace_state,
                        protocol=protocol,
                    )
                )
    return spans


_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _hex_ids_to_base64(node: Any) -> Any:
    """Rewrite OTLP/JSON's hex IDs into the base64 that protobuf's JSON parser expects for bytes.

    OTLP/JSON deviates from proto3 JSON exactly here (the spec mandates hex for trace and span
    IDs), so a stock ``json_format.Parse`` would misread or reject every real OTLP/JSON payload.
    """
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                out[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
            else:
                out[key] = _hex_ids_to_base64(value)
        return out
    if isinstance(node, list):
        return [_hex_ids_to_base64(item) for item in node]
    return node


def parse_json_request(body: bytes) -> trace_service_pb2.ExportTraceServiceRequest:
    """Decode an OTLP/JSON export body (hex IDs; unknown fields ignored, as the spec requires)."""
    document = _hex_ids_to_base64(json.loads(body))
    request = trace_service_pb2.ExportTraceServiceRequest()
    json_format.ParseDict(document, request, ignore_unknown_fields=True)
    return request


# --- The two transports -----------------------------------------------------------------------


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    """OTLP/gRPC: hands each request to the receiver; grpcio handles gzip and size limits."""

    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        headers = {key.lower(): str(value) for key, value in context.invocation_metadata()}
        spans = flatten(request, "grpc")
        self._receiver._record(ReceivedRequest("grpc", "protobuf", "", headers, len(spans)), spans)
        return trace_service_pb2.ExportTraceServiceResponse()


class _HttpHandler(BaseHTTPRequestHandler):
    """OTLP/HTTP: ``POST /v1/traces`` with protobuf or JSON bodies, optionally gzip/deflate.

    HTTP/1.0 (one request per connection) on purpose: a kept-alive connection would leave a
    handler thread blocked on a socket after ``stop()``, outliving the test that started it.
    """

    server: _HttpServer
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging: pytest would show it as noise on every failure."""

    def do_POST(self) -> None:
        receiver = self.server.receiver
        headers = {key.lower(): value for key, value in self.headers.items()}
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        compression = headers.get("content-encoding", "").strip().lower()
        if compression == "identity":
            compression = ""
        encoding = "json" if content_type == _JSON else "protobuf"

        def reject(status: HTTPStatus, message: str) -> None:
            receiver._record(ReceivedRequest("http", encoding, compression, headers, 0, message), [])
            self._reply(status, _status_body(status, message, content_type), content_type)

        if self.path.split("?")[0].rstrip("/") != TRACES_PATH:
            reject(HTTPStatus.NOT_FOUND, f"only POST {TRACES_PATH} is served, not {self.path}")
            return
        if content_type not in (_PROTOBUF, _JSON):
            reject(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"unsupported content-type {content_type!r}")
            return
        try:
            body = self._read_body(receiver.http_max_body_bytes)
        except _TooLarge as exc:
            reject(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(exc))
            return
        try:
            if compression == "gzip":
                body = gzip.decompress(body)
            elif compression == "deflate":
                body = zlib.decompress(body)
            elif compression:
                reject(HTTPStatus.BAD_REQUEST, f"unsupported content-encoding {compression!r}")
                return
            if content_type == _JSON:
                request = parse_json_request(body)
            else:
                request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        except (OSError, EOFError, zlib.error, DecodeError, ValueError, json_format.ParseError) as exc:
            reject(HTTPStatus.BAD_REQUEST, f"undecodable {encoding} body: {exc}")
            return
        spans = flatten(request, "http")
        receiver._record(ReceivedRequest("http", encoding, compression, headers, len(spans)), spans)
        response = trace_service_pb2.ExportTraceServiceResponse()
        if content_type == _JSON:
            payload = json_format.MessageToJson(response).encode()
        else:
            payload = response.SerializeToString()
        self._reply(HTTPStatus.OK, payload, content_type)

    def do_GET(self) -> None:
        self._reply(HTTPStatus.METHOD_NOT_ALLOWED, b"OTLP receiver: POST /v1/traces\n", "text/plain")

    def _read_body(self, limit: int) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()  # the empty line that ends the chunked body
                    return b"".join(chunks)
                total += size
                if total > limit:
                    raise _TooLarge(f"body larger than {limit} bytes")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > limit:
            raise _TooLarge(f"body of {length} bytes is larger than {limit} bytes")
        return self.rfile.read(length)

    def _reply(self, status: HTTPStatus, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type or "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _TooLarge(Exception):
    pass


def _status_body(status: HTTPStatus, message: str, content_type: str) -> bytes:
    """The error body OTLP/HTTP prescribes: a ``google.rpc.Status`` in the request's encoding."""
    error = status_pb2.Status(code=int(status), message=message)
    if content_type == _JSON:
        return json_format.MessageToJson(error).encode()
    if content_type == _PROTOBUF:
        return error.SerializeToString()
    return message.encode()


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client must never keep the test process alive

    def __init__(self, receiver: OtlpReceiver) -> None:
        super().__init__(("127.0.0.1", 0), _HttpHandler)
        self.receiver = receiver


# --- The receiver -----------------------------------------------------------------------------


class OtlpReceiver:
    """An OTLP trace receiver on 127.0.0.1 serving gRPC and HTTP at once, for tests.

    Thread-safe: both transports append under one lock, and :meth:`wait_for` sleeps on a
    condition that every arriving request signals, so waiting costs no polling latency.
    """

    def __init__(
        self,
        *,
        grpc_max_receive_bytes: int = DEFAULT_GRPC_MAX_RECEIVE_BYTES,
        http_max_body_bytes: int = DEFAULT_HTTP_MAX_BODY_BYTES,
    ) -> None:
        self.grpc_max_receive_bytes = grpc_max_receive_bytes
        self.http_max_body_bytes = http_max_body_bytes
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._spans: list[ReceivedSpan] = []
        self._requests: list[ReceivedRequest] = []
        self._grpc_server: grpc.Server | None = None
        self._grpc_port = 0
        self._http_server: _HttpServer | None = None
        self._http_thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> OtlpReceiver:
        """Bind both transports on ephemeral ports and start serving; returns ``self``."""
        if self.running:
            raise RuntimeError("OtlpReceiver is already running")
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="otlp-receiver-grpc"),
            options=[("grpc.max_receive_message_length", self.grpc_max_receive_bytes)],
        )
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), server)
        port = server.add_insecure_port("127.0.0.1:0")
        if not port:
            raise RuntimeError("OtlpReceiver could not bind a gRPC port on 127.0.0.1")
        server.start()
        self._grpc_server, self._grpc_port = server, port
        try:
            self._http_server = _HttpServer(self)
        except OSError:
            self.stop()
            raise
        self._http_thread = threading.Thread(
            target=self._http_server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="otlp-receiver-http",
            daemon=True,
        )
        self._http_thread.start()
        return self

    def stop(self) -> None:
        """Stop both transports (idempotent). What was received stays readable."""
        grpc_server, self._grpc_server = self._grpc_server, None
        http_server, self._http_server = self._http_server, None
        http_thread, self._http_thread = self._http_thread, None
        if grpc_server is not None:
            grpc_server.stop(grace=None).wait(5)
        if http_server is not None:
            http_server.shutdown()
            http_server.server_close()
        if http_thread is not None:
            http_thread.join(5)

    @property
    def running(self) -> bool:
        return self._grpc_server is not None

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # where to send

    @property
    def grpc_endpoint(self) -> str:
        """``http://127.0.0.1:PORT``: the ``http`` scheme makes the gRPC exporter use no TLS."""
        if self._grpc_server is None:
            raise RuntimeError("OtlpReceiver is not running: call start() or use it as a context manager")
        return f"http://127.0.0.1:{self._grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """The base URL; exporters configured by ``OTEL_EXPORTER_OTLP_ENDPOINT`` add ``/v1/traces``."""
        if self._http_server is None:
            raise RuntimeError("OtlpReceiver is not running: call start() or use it as a context manager")
        return f"http://127.0.0.1:{self._http_server.server_address[1]}"

    @property
    def http_traces_url(self) -> str:
        """The full signal URL, for exporters constructed with an explicit ``endpoint=``."""
        return self.http_endpoint + TRACES_PATH

    def env(self, protocol: Protocol = "grpc", *, compression: str | None = None) -> dict[str, str]:
        """The environment a subprocess needs to export its traces here.

        Besides the generic ``OTEL_EXPORTER_OTLP_ENDPOINT``/``_PROTOCOL``, the traces-specific
        variables are set too: they take precedence in the SDK, so a developer's own
        ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` cannot silently divert the test's data. Metrics and
        logs are turned off because this receiver serves traces only; their exporters would
        otherwise log connection errors into the output tests assert on. The short batch delay
        makes spans arrive while the process is still running, not only at its exit.
        """
        if protocol == "grpc":
            endpoint, wire, traces_endpoint = self.grpc_endpoint, "grpc", self.grpc_endpoint
        elif protocol == "http":
            endpoint, wire, traces_endpoint = self.http_endpoint, "http/protobuf", self.http_traces_url
        else:
            raise ValueError(f"protocol must be 'grpc' or 'http', not {protocol!r}")
        no_proxy = ",".join(
            part for part in (os.environ.get("NO_PROXY") or os.environ.get("no_proxy"), "127.0.0.1") if part
        )
        env = {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_PROTOCOL": wire,
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": wire,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": traces_endpoint,
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            # A proxy configured on a developer's machine must not intercept loopback exports.
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
        }
        if compression is not None:
            env["OTEL_EXPORTER_OTLP_COMPRESSION"] = compression
            env["OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"] = compression
        return env

    # what arrived

    def _record(self, request: ReceivedRequest, spans: Sequence[ReceivedSpan]) -> None:
        with self._arrived:
            self._requests.append(request)
            self._spans.extend(spans)
            self._arrived.notify_all()

    def spans(self) -> list[ReceivedSpan]:
        """A snapshot of every span received so far, in arrival order."""
        with self._lock:
            return list(self._spans)

    def requests(self) -> list[ReceivedRequest]:
        """A snapshot of every export request so far, including rejected ones."""
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        """Forget everything received, e.g. between two phases of one test."""
        with self._lock:
            self._spans.clear()
            self._requests.clear()

    def wait_for(
        self, predicate: Callable[[list[ReceivedSpan]], object], timeout: float = 30.0
    ) -> list[ReceivedSpan]:
        """Wait until ``predicate(spans)`` is truthy and return those spans.

        The predicate sees every span received so far, is re-evaluated whenever a request
        arrives, and must not block. On timeout an ``AssertionError`` says what did arrive, since
        "nothing matched" alone is useless when debugging an exporter that sent the wrong thing.
        """
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                snapshot = list(self._spans)
                if predicate(snapshot):
                    return snapshot
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"OtlpReceiver: condition not met within {timeout:g}s.\n" + self._summary_locked()
                    )
                # Bounded waits re-check now and then, in case the predicate looks at outside state.
                self._arrived.wait(min(remaining, 0.25))

    def wait_for_spans(self, count: int, timeout: float = 10.0) -> list[ReceivedSpan]:
        """Wait until at least ``count`` spans have arrived."""
        return self.wait_for(lambda spans: len(spans) >= count, timeout)

    def summary(self) -> str:
        """A human-readable digest of what arrived: for failure messages and debugging."""
        with self._lock:
            return self._summary_locked()

    def _summary_locked(self) -> str:
        requests, spans = self._requests, self._spans
        if not requests:
            return "Nothing arrived: no export request reached the receiver."
        lines = [
            f"{len(requests)} request(s) ({_counts(r.protocol + '/' + r.encoding for r in requests)}), "
            f"{len(spans)} span(s) in {len({s.trace_id for s in spans})} trace(s)."
        ]
        lines += [f"  rejected {r.protocol} request: {r.error}" for r in requests if r.error][:10]
        for span in spans[:40]:
            events = f", events={_counts(e.name for e in span.events)}" if span.events else ""
            lines.append(
                f"  {span.trace_id}/{span.span_id} parent={span.parent_span_id or '-'} "
                f"{span.name!r} kind={span.kind} status={span.status_code}{events}"
            )
        if len(spans) > 40:
            lines.append(f"  ... and {len(spans) - 40} more")
        return "\n".join(lines)

    def __repr__(self) -> str:
        if not self.running:
            return "<OtlpReceiver stopped>"
        return f"<OtlpReceiver grpc={self.grpc_endpoint} http={self.http_endpoint} spans={len(self.spans())}>"


def _counts(items: Iterable[str]) -> str:
    return ", ".join(f"{name}×{n}" for name, n in Counter(items).items())


def spans_by_id(spans: Iterable[ReceivedSpan]) -> Mapping[str, ReceivedSpan]:
    """Index spans by span ID: handy for walking parents in assertions."""
    return {span.span_id: span for span in spans}
