"""A hand-built hybrid session, recorded through the real OTel SDK, shared by the timeline, store
and CLI tests (imported as ``test_timeline_sample``; pytest puts ``tests/`` on ``sys.path``).

It holds what otel-scope emits per ``otel_scope.semconv``: a session root span, runtime spans with
arguments and return values, compile-time locals/line/expression events, state before/after, a
message sent by one call and received by another (event plus span link), an exception with an
escalation, a compile-time span, and an HTTP client span from another instrumentation. Times are
whole microseconds after ``BASE_NS`` so that Jaeger's microsecond format keeps them exactly.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from otel_scope import semconv as sc

BASE_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
MESSAGE_ID = "msg-1"
RECEIVE = "shop.orders.OrderReceiver.receive"
HANDLE = "shop.inventory.InventoryChecker.handle"
RESERVE = "shop.inventory.reserve"
QUOTE = "shop.pricing.quote"

# The timeline of the sample session, line by line (depth shown by indentation).
EXPECTED_LINES = [
    "SESSION checkout (explicit)",
    "  CALL shop.orders.OrderReceiver.receive(order={'id': 1, 'item': 'itemA'})",
    "    MESSAGE sent #msg-1 via queue.Queue to shop.inventory.InventoryChecker.handle: check_stock itemA",
    "  RETURN shop.orders.OrderReceiver.receive -> 'accepted' (1.40 ms)",
    "  CALL shop.inventory.InventoryChecker.handle(item_id='itemA')",
    "    MESSAGE received #msg-1 via queue.Queue from shop.orders.OrderReceiver.receive: check_stock itemA",
    "    LINE 15  VAR stock = 10, reserved = 3",
    "    LINE 18  VAR item_id = 'itemA'",
    "    LINE 22",
    "    LINE 28  EXPR stock - reserved = 7",
    "    CALL shop.inventory.reserve(qty=1)",
    "      LINE 40  VAR left = 9",
    "    RETURN shop.inventory.reserve -> True (100.0 µs)",
    "    STATE stock: {'itemA': 10} -> {'itemA': 9}",
    "  RETURN shop.inventory.InventoryChecker.handle -> 9 (1.00 ms)",
    "  CALL shop.pricing.quote(item_id='itemA')",
    "    SPAN GET /prices (CLIENT)",
    "    END GET /prices (50.0 µs)",
    "    ESCALATED exception (next 5 calls)",
    "  EXCEPTION shop.pricing.quote ValueError: no price for itemA (200.0 µs)",
    "END SESSION checkout exit normal (5.00 ms)",
]


def _t(us: int) -> int:
    return BASE_NS + us * 1_000


def record_session(*exporters: SpanExporter, session_name: str = "checkout", base_us: int = 0) -> str:
    """Record the sample session into ``exporters`` (synchronously); returns its trace ID in hex."""
    provider = TracerProvider(resource=Resource.create({"service.name": "shop", "host.name": "dev-box"}))
    for exporter in exporters:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("otel_scope")

    def t(us: int) -> int:
        return _t(base_us + us)

    session = tracer.start_span(
        sc.SESSION_SPAN_NAME,
        start_time=t(0),
        attributes={
            sc.MECHANISM: sc.MECHANISM_RUNTIME,
            sc.SESSION_NAME: session_name,
            sc.SESSION_KIND: "explicit",
            sc.SESSION_EXIT: "normal",
        },
    )
    trace_id = f"{session.get_span_context().trace_id:032x}"
    session.set_attribute(sc.SESSION_ID, trace_id)
    common = {sc.SESSION_ID: trace_id, sc.SESSION_NAME: session_name}
    in_session = trace.set_span_in_context(session)
    runtime = {sc.MECHANISM: sc.MECHANISM_RUNTIME, **common}
    compile_time = {sc.MECHANISM: sc.MECHANISM_COMPILE_TIME, **common}

    receive = tracer.start_span(
        RECEIVE,
        context=in_session,
        start_time=t(100),
        attributes={
            sc.CODE_FUNCTION_NAME: RECEIVE,
            **runtime,
            sc.ARG_PREFIX + "order": "{'id': 1, 'item': 'itemA'}",
            sc.RETURN_VALUE: "'accepted'",
        },
    )
    message = {
        sc.MESSAGE_ID: MESSAGE_ID,
        sc.MESSAGE_CHANNEL: "queue.Queue",
        sc.MESSAGE_FROM: RECEIVE,
        sc.MESSAGE_TO: HANDLE,
        sc.MESSAGE_SUMMARY: "check_stock itemA",
    }
    receive.add_event(sc.EVENT_MESSAGE_SENT, {**runtime, **message}, timestamp=t(400))
    receive.end(end_time=t(1500))

    handle = tracer.start_span(
        HANDLE,
        context=in_session,
        start_time=t(2000),
        links=[Link(receive.get_span_context(), {sc.MESSAGE_ID: MESSAGE_ID})],
        attributes={
            sc.CODE_FUNCTION_NAME: HANDLE,
            **runtime,
            sc.ARG_PREFIX + "item_id": "'itemA'",
            sc.RETURN_VALUE: "9",
            sc.CAPTURES_DROPPED: 2,
            sc.CAPTURES_DROPPED_REASON: "loop_sampling",
        },
    )
    handle.add_event(sc.EVENT_MESSAGE_RECEIVED, {**runtime, **message}, timestamp=t(2010))
    handle.add_event(
        sc.EVENT_LOCALS,
        {
            **compile_time,
            sc.CODE_LINE_NUMBER: 15,
            sc.VAR_PREFIX + "stock": "10",
            sc.VAR_PREFIX + "stock" + sc.VAR_TYPE_SUFFIX: "int",
            sc.VAR_PREFIX + "reserved": "3",
            sc.HIT: 1,
        },
        timestamp=t(2100),
    )
    handle.add_event(
        sc.EVENT_LOCALS,
        {**compile_time, sc.CODE_LINE_NUMBER: 18, sc.VAR_PREFIX + "item_id": "'itemA'", sc.HIT: 1},
        timestamp=t(2200),
    )
    handle.add_event(sc.EVENT_LINE, {**compile_time, sc.CODE_LINE_NUMBER: 22}, timestamp=t(2300))
    handle.add_event(
        sc.EVENT_EXPRESSION,
        {
            **compile_time,
            sc.CODE_LINE_NUMBER: 28,
            sc.EXPRESSION_TEXT: "stock - reserved",
            sc.EXPRESSION_VALUE: "7",
        },
        timestamp=t(2400),
    )
    reserve = tracer.start_span(
        RESERVE,
        context=trace.set_span_in_context(handle),
        start_time=t(2500),
        attributes={
            sc.CODE_FUNCTION_NAME: RESERVE,
            **compile_time,
            sc.ARG_PREFIX + "qty": "1",
            sc.RETURN_VALUE: "True",
        },
    )
    reserve.add_event(
        sc.EVENT_LOCALS,
        {**compile_time, sc.CODE_LINE_NUMBER: 40, sc.VAR_PREFIX + "left": "9"},
        timestamp=t(2550),
    )
    reserve.end(end_time=t(2600))
    handle.add_event(
        sc.EVENT_STATE,
        {
            **runtime,
            sc.STATE_ATTRIBUTE: "stock",
            sc.STATE_BEFORE: "{'itemA': 10}",
            sc.STATE_AFTER: "{'itemA': 9}",
        },
        timestamp=t(2900),
    )
    handle.end(end_time=t(3000))

    quote = tracer.start_span(
        QUOTE,
        context=in_session,
        start_time=t(3200),
        attributes={sc.CODE_FUNCTION_NAME: QUOTE, **runtime, sc.ARG_PREFIX + "item_id": "'itemA'"},
    )
    http = tracer.start_span(
        "GET /prices",
        context=trace.set_span_in_context(quote),
        kind=SpanKind.CLIENT,
        start_time=t(3250),
        attributes={"http.request.method": "GET", "url.full": "http://prices/itemA"},
    )
    http.end(end_time=t(3300))
    quote.record_exception(ValueError("no price for itemA"), timestamp=t(3390))
    quote.add_event(
        sc.EVENT_ESCALATION,
        {**runtime, sc.ESCALATION_REASON: "exception", sc.ESCALATION_CALLS: 5},
        timestamp=t(3395),
    )
    quote.set_status(Status(StatusCode.ERROR, "ValueError: no price for itemA"))
    quote.end(end_time=t(3400))

    session.end(end_time=t(5000))
    provider.force_flush()
    return trace_id


def sample_spans(**kwargs: object) -> tuple[str, list]:
    """The sample session as finished SDK spans: ``(trace_id, spans)``."""
    memory = InMemorySpanExporter()
    trace_id = record_session(memory, **kwargs)  # type: ignore[arg-type]
    return trace_id, list(memory.get_finished_spans())


def _semconv_names() -> set[str]:
    return {v for k, v in vars(sc).items() if k.isupper() and isinstance(v, str)}


def test_sample_session_uses_only_names_from_semconv() -> None:
    names = _semconv_names()
    prefixes = (sc.ARG_PREFIX, sc.VAR_PREFIX)
    _, spans = sample_spans()
    keys = set()
    for span in spans:
        keys |= set(span.attributes)
        for event in span.events:
            keys |= set(event.attributes)
            if event.name.startswith("otel_scope."):
                assert event.name in names, event.name
    ours = {
        k for k in keys if k.startswith("otel_scope.") or k.startswith("code.") or k.startswith("exception.")
    }
    sdk_own = {"exception.stacktrace", "exception.escaped"}  # Span.record_exception adds these
    unknown = {k for k in ours - sdk_own if k not in names and not k.startswith(prefixes)}
    assert unknown == set()
