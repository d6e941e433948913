"""The unified timeline renderer: content, order, filters, message chains and JSON entries."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest
from rich.console import Console

from otel_scope import semconv as sc
from otel_scope.store import SpanStore, record_from_span
from otel_scope.timeline import (
    EventRecord,
    LinkRecord,
    SpanRecord,
    TraceData,
    TraceNotFound,
    build_timeline,
    entries_to_json,
    follow,
    render_entries,
    render_history,
)
from otel_scope.timeline.reader import TraceReader
from otel_scope.timeline.render import follow_entries
from test_timeline_sample import EXPECTED_LINES, HANDLE, MESSAGE_ID, RECEIVE, RESERVE, sample_spans

PREFIX = 23  # "   +12.345ms [RUNTIME] " : offset (12), tag (9) and two spaces


def _sample() -> TraceData:
    trace_id, spans = sample_spans()
    return TraceData(trace_id, [record_from_span(s) for s in spans])


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=60, highlight=False, markup=False, emoji=False, soft_wrap=True), out


def _render(trace: TraceData, function: str | None = None) -> list[str]:
    console, out = _console()
    render_history(trace, console, function)
    return out.getvalue().splitlines()


def _timeline(lines: list[str]) -> list[str]:
    return [line[PREFIX:] for line in lines if line.lstrip().startswith("+")]


def test_history_shows_calls_and_their_events_in_time_order() -> None:
    assert _timeline(_render(_sample())) == EXPECTED_LINES


def test_each_line_is_tagged_with_the_mechanism_that_made_it() -> None:
    tags = {
        line[PREFIX:].strip(): line[13:22].strip()
        for line in _render(_sample())
        if line.lstrip().startswith("+")
    }
    assert tags["CALL shop.orders.OrderReceiver.receive(order={'id': 1, 'item': 'itemA'})"] == "[RUNTIME]"
    assert tags["LINE 15  VAR stock = 10, reserved = 3"] == "[COMPILE]"
    assert tags["CALL shop.inventory.reserve(qty=1)"] == "[COMPILE]"
    assert tags["STATE stock: {'itemA': 10} -> {'itemA': 9}"] == "[RUNTIME]"
    assert tags["SPAN GET /prices (CLIENT)"] == "[OTEL]"


def test_times_are_offsets_from_the_trace_start() -> None:
    lines = [line for line in _render(_sample()) if line.lstrip().startswith("+")]
    assert lines[0].split()[0] == "+0.000ms"
    assert lines[6].split()[0] == "+2.100ms"  # LINE 15, 2.1 ms after the session began
    assert lines[-1].split()[0] == "+5.000ms"


def test_header_names_trace_session_service_and_dropped_captures() -> None:
    trace = _sample()
    header = "\n".join(_render(trace)[:4])
    assert f"Trace {trace.trace_id}" in header
    assert "session checkout" in header and "service shop" in header
    assert "spans 6 (runtime 4, compile_time 1, otel 1)" in header and "errors 1" in header
    assert "dropped captures: 2 (loop_sampling)" in header


def test_header_has_no_dropped_line_when_nothing_was_dropped() -> None:
    trace = _sample()
    for span in trace.spans:
        span.attributes.pop(sc.CAPTURES_DROPPED, None)
    assert not any("dropped" in line for line in _render(trace))


def test_events_dropped_by_the_sdk_and_backend_warnings_are_reported() -> None:
    trace = _sample()
    trace.spans[1].dropped_events_count = 7
    trace.warnings.append("Tempo returned a partial trace")
    text = "\n".join(_render(trace))
    assert "events dropped at the SDK's per-span limit: 7" in text
    assert "warning: Tempo returned a partial trace" in text


@pytest.mark.parametrize(
    "pattern", ["InventoryChecker.handle", "*InventoryChecker.*", "shop.inventory:InventoryChecker.handle"]
)
def test_function_filter_keeps_matching_calls_with_their_events(pattern: str) -> None:
    assert _timeline(_render(_sample(), pattern)) == [
        "CALL shop.inventory.InventoryChecker.handle(item_id='itemA')",
        "  MESSAGE received #msg-1 via queue.Queue from shop.orders.OrderReceiver.receive: check_stock itemA",
        "  LINE 15  VAR stock = 10, reserved = 3",
        "  LINE 18  VAR item_id = 'itemA'",
        "  LINE 22",
        "  LINE 28  EXPR stock - reserved = 7",
        "  STATE stock: {'itemA': 10} -> {'itemA': 9}",
        "RETURN shop.inventory.InventoryChecker.handle -> 9 (1.00 ms)",
    ]


def test_function_filter_nests_matching_calls_inside_matching_calls() -> None:
    lines = _timeline(_render(_sample(), "shop.inventory.*"))
    assert lines[0].startswith("CALL " + HANDLE)
    assert "  CALL shop.inventory.reserve(qty=1)" in lines
    assert "    LINE 40  VAR left = 9" in lines


def test_function_filter_glob_matches_the_tail_of_the_name() -> None:
    lines = _timeline(_render(_sample(), "reserv*"))
    assert lines == [
        "CALL shop.inventory.reserve(qty=1)",
        "  LINE 40  VAR left = 9",
        "RETURN shop.inventory.reserve -> True (100.0 µs)",
    ]


def test_function_filter_without_a_match_lists_the_traced_functions() -> None:
    text = "\n".join(_render(_sample(), "nothing_like_this"))
    assert "no calls matching 'nothing_like_this'" in text and RESERVE in text


def test_captured_values_are_printed_verbatim_never_as_markup() -> None:
    trace = _sample()
    handle = next(s for s in trace.spans if s.name == HANDLE)
    handle.events[1].attributes[sc.VAR_PREFIX + "stock"] = "[bold red]10[/] :smile:"
    assert "    LINE 15  VAR stock = [bold red]10[/] :smile:, reserved = 3" in _timeline(_render(trace))


def test_json_entries_carry_kind_mechanism_line_and_attributes() -> None:
    trace = _sample()
    entries = entries_to_json(build_timeline(trace))
    assert [e["text"] for e in entries] == [line.strip() for line in EXPECTED_LINES]
    locals_entry = next(e for e in entries if e["kind"] == "locals")
    assert locals_entry["mechanism"] == "compile_time" and locals_entry["line"] == 15
    assert locals_entry["function"] == HANDLE and locals_entry["trace_id"] == trace.trace_id
    assert locals_entry["attributes"][sc.VAR_PREFIX + "stock"] == "10"
    assert locals_entry["offset_ns"] == 2_100_000
    assert {e["kind"] for e in entries} >= {
        "session",
        "call",
        "return",
        "exception",
        "state",
        "message_sent",
        "span",
    }


def _span(
    span_id: str, name: str, start: int, end: int, parent: str | None = None, **kw: object
) -> SpanRecord:
    return SpanRecord(
        trace_id="ab" * 16,
        span_id=span_id,
        parent_span_id=parent,
        name=name,
        start_ns=start,
        end_ns=end,
        attributes={sc.CODE_FUNCTION_NAME: name, sc.MECHANISM: sc.MECHANISM_RUNTIME},
        **kw,  # type: ignore[arg-type]
    )


def _message(sent: bool, mid: str, at: int) -> EventRecord:
    name = sc.EVENT_MESSAGE_SENT if sent else sc.EVENT_MESSAGE_RECEIVED
    return EventRecord(
        name,
        at,
        {sc.MECHANISM: sc.MECHANISM_RUNTIME, sc.MESSAGE_ID: mid, sc.MESSAGE_CHANNEL: "asyncio.Queue"},
    )


def _locals(at: int, line: int, **values: str) -> EventRecord:
    attributes = {sc.MECHANISM: sc.MECHANISM_COMPILE_TIME, sc.CODE_LINE_NUMBER: line}
    attributes.update({sc.VAR_PREFIX + k: v for k, v in values.items()})
    return EventRecord(sc.EVENT_LOCALS, at, attributes)


def _relay_trace() -> TraceData:
    """a.send --m1--> b.relay --m2--> c.sink, plus an unrelated call; built by hand."""
    return TraceData(
        "ab" * 16,
        [
            _span("0000000000000001", "a.send", 0, 100, events=[_message(True, "m1", 50)]),
            _span(
                "0000000000000002",
                "b.relay",
                200,
                400,
                events=[_message(False, "m1", 210), _locals(220, 7, item="'x'"), _message(True, "m2", 300)],
            ),
            _span(
                "0000000000000003",
                "c.sink",
                500,
                700,
                events=[
                    _message(False, "m2", 510),
                    _locals(520, 12, total="3"),
                    EventRecord(
                        sc.EVENT_STATE,
                        600,
                        {sc.STATE_ATTRIBUTE: "count", sc.STATE_BEFORE: "0", sc.STATE_AFTER: "1"},
                    ),
                ],
            ),
            _span("0000000000000004", "d.unrelated", 800, 900, events=[_locals(850, 3, z="0")]),
        ],
    )


def _texts(entries: list) -> list[str]:
    return [
        "  " * e.depth + e.text.rsplit(" (", 1)[0] if e.kind in ("return",) else "  " * e.depth + e.text
        for e in entries
    ]


RELAY_CHAIN = [
    "MESSAGE #m1 via asyncio.Queue a.send -> b.relay",
    "  CALL a.send()",
    "    MESSAGE sent #m1 via asyncio.Queue",
    "  RETURN a.send",
    "  CALL b.relay()",
    "    MESSAGE received #m1 via asyncio.Queue",
    "    LINE 7  VAR item = 'x'",
    "    MESSAGE sent #m2 via asyncio.Queue",
    "  RETURN b.relay",
    "MESSAGE #m2 via asyncio.Queue b.relay -> c.sink",
    "  CALL b.relay()",
    "    MESSAGE sent #m2 via asyncio.Queue",
    "  RETURN b.relay",
    "  CALL c.sink()",
    "    MESSAGE received #m2 via asyncio.Queue",
    "    LINE 12  VAR total = 3",
    "    STATE count: 0 -> 1",
    "  RETURN c.sink",
]


def test_follow_a_message_shows_sender_message_receivers_and_onward_messages() -> None:
    assert _texts(follow(_relay_trace(), "m1")) == RELAY_CHAIN


def test_follow_a_span_id_starts_from_the_messages_it_sent() -> None:
    assert _texts(follow(_relay_trace(), "0000000000000001")) == RELAY_CHAIN
    sample = _sample()
    receive = next(s for s in sample.spans if s.name == RECEIVE)
    assert _texts(follow(sample, receive.span_id[:8])) == _texts(
        follow(sample, MESSAGE_ID)
    )  # a unique prefix
    with pytest.raises(TraceNotFound, match="matches 4 spans"):
        follow(_relay_trace(), "00000000")
    assert (
        _texts(follow(_relay_trace(), "0000000000000003"))[0]
        == "MESSAGE #m2 via asyncio.Queue b.relay -> c.sink"
    )


def test_follow_in_the_sample_uses_events_and_the_span_link() -> None:
    entries = follow(_sample(), MESSAGE_ID)
    texts = [e.text for e in entries]
    assert texts[0] == f"MESSAGE #msg-1 via queue.Queue {RECEIVE} -> {HANDLE}: check_stock itemA"
    assert texts[1].startswith("CALL " + RECEIVE) and texts[3].startswith("RETURN " + RECEIVE)
    assert "LINE 15  VAR stock = 10, reserved = 3" in texts
    assert "STATE stock: {'itemA': 10} -> {'itemA': 9}" in texts
    assert not any("quote" in t for t in texts)


def test_follow_a_link_without_message_events() -> None:
    sender = _span("0000000000000001", "p.produce", 0, 100)
    receiver = _span(
        "0000000000000002", "c.consume", 200, 300, links=[LinkRecord("ab" * 16, "0000000000000001")]
    )
    receiver.events.append(_locals(250, 9, n="1"))
    entries = follow(TraceData("ab" * 16, [sender, receiver]), "0000000000000002")
    assert [e.text.split(" (")[0] for e in entries] == [
        "CALL p.produce()",
        "RETURN p.produce",
        "CALL c.consume()",
        "LINE 9  VAR n = 1",
        "RETURN c.consume",
    ]


def test_follow_finds_messages_in_a_store_written_before_the_message_index(tmp_path: Path) -> None:
    trace, path = _relay_trace(), tmp_path / "store.sqlite3"
    store = SpanStore(path)
    store.add_records(trace.spans)
    store.close()
    with sqlite3.connect(path) as conn:  # as an older otel-scope left it: no spans_trace_messages
        conn.execute("DROP INDEX spans_trace_messages")
    with TraceReader(path, trace.trace_id) as reader:
        assert _texts(list(follow_entries(reader, "m1"))) == RELAY_CHAIN
        assert _texts(list(follow_entries(reader, "#0000000000000001"))) == RELAY_CHAIN


def test_follow_an_unknown_id_is_trace_not_found() -> None:
    with pytest.raises(TraceNotFound, match="no message or span 'nope'"):
        follow(_relay_trace(), "nope")


def test_follow_renders_with_the_trace_header() -> None:
    console, out = _console()
    trace = _relay_trace()
    render_entries(trace, follow(trace, "m2"), console)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"Trace {trace.trace_id}")
    assert _timeline(lines)[0] == "MESSAGE #m2 via asyncio.Queue b.relay -> c.sink"


def test_calls_stay_between_their_call_and_return_when_clocks_tie() -> None:
    parent = _span("0000000000000001", "p.outer", 1000, 1000, events=[_locals(1000, 1, a="1")])
    child = _span("0000000000000002", "p.inner", 1000, 1000, parent="0000000000000001")
    lines = [e.text.split(" (")[0] for e in build_timeline(TraceData("ab" * 16, [child, parent]))]
    assert lines == [
        "CALL p.outer()",
        "LINE 1  VAR a = 1",
        "CALL p.inner()",
        "RETURN p.inner",
        "RETURN p.outer",
    ]


def test_generator_and_compile_time_return_and_other_events_are_described() -> None:
    span = _span("0000000000000001", "g.gen", 0, 10)
    span.attributes.update({sc.YIELD_COUNT: 3, sc.GENERATOR_END: "exhausted"})
    span.events += [
        EventRecord(sc.EVENT_RETURN, 5, {sc.CODE_LINE_NUMBER: 4, sc.RETURN_VALUE: "7"}),
        EventRecord(sc.EVENT_LINE, 6, {sc.CODE_LINE_NUMBER: 5, sc.HIT: 3}),
        EventRecord(
            sc.EVENT_EXCEPTION_FRAME,
            7,
            {sc.CODE_FUNCTION_NAME: "g.helper", sc.CODE_LINE_NUMBER: 9, sc.VAR_PREFIX + "x": "1"},
        ),
        EventRecord("exception", 8, {sc.EXCEPTION_TYPE: "KeyError", sc.EXCEPTION_MESSAGE: "'k'"}),
        EventRecord("custom.thing", 9, {"k": "v", sc.MECHANISM: "runtime"}),
    ]
    assert [e.text for e in build_timeline(TraceData("ab" * 16, [span]))] == [
        "CALL g.gen()",
        "LINE 4  RETURN 7",
        "LINE 5  (hit 3)",
        "FRAME g.helper LINE 9  VAR x = 1",
        "EXCEPTION KeyError: 'k'",
        "EVENT custom.thing k=v",
        # the compile-time return line's value is the call's, as a runtime span records it
        "RETURN g.gen -> 7 [generator exhausted after 3 items] (10 ns)",
    ]


def test_deeply_nested_calls_render_beyond_the_recursion_limit() -> None:
    depth = 3000
    spans = [
        _span(f"{i + 1:016x}", "r.recurse", i, 2 * depth - i, parent=f"{i:016x}" if i else None)
        for i in range(depth)
    ]
    entries = build_timeline(TraceData("ab" * 16, spans))
    assert len(entries) == 2 * depth
    assert [e.depth for e in entries[:3]] == [0, 1, 2] and entries[-1].depth == 0
    assert entries[depth - 1].kind == "call" and entries[depth].kind == "return"


def test_a_line_event_shows_the_source_text_of_its_line(tmp_path) -> None:
    source = tmp_path / "shop_lines.py"
    source.write_text("def total(items):\n    s = 0\n    for item in items:\n        s += item.price\n")
    span = _span("0000000000000001", "shop_lines.total", 0, 10)
    span.attributes[sc.CODE_FILE_PATH] = str(source)
    span.events.append(EventRecord(sc.EVENT_LINE, 5, {sc.CODE_LINE_NUMBER: 4}))
    assert [e.text for e in build_timeline(TraceData("ab" * 16, [span]))][1] == "LINE 4  s += item.price"


def test_compile_time_and_runtime_render_a_method_call_the_same_way() -> None:
    runtime = _span("0000000000000001", "bank.Account.deposit", 0, 10)
    runtime.attributes.update({sc.ARG_PREFIX + "amount": "0", sc.RETURN_VALUE: "5"})
    compiled = _span("0000000000000002", "bank.Account.deposit", 20, 30)
    compiled.attributes.update(
        {
            sc.MECHANISM: sc.MECHANISM_COMPILE_TIME,
            sc.ARG_PREFIX + "self": "<Account>",
            sc.ARG_PREFIX + "amount": "0",
        }
    )
    compiled.events.append(EventRecord(sc.EVENT_RETURN, 25, {sc.CODE_LINE_NUMBER: 9, sc.RETURN_VALUE: "5"}))
    texts = [e.text for e in build_timeline(TraceData("ab" * 16, [runtime, compiled]))]
    assert texts[0] == texts[2] == "CALL bank.Account.deposit(amount=0)"
    assert texts[1].split(" (")[0] == texts[4].split(" (")[0] == "RETURN bank.Account.deposit -> 5"


def test_offsets_past_ten_seconds_keep_microseconds() -> None:
    from otel_scope.timeline.render import format_offset

    assert format_offset(13_113_456_789) == "+13.113456s"
    assert format_offset(13_113_457_789) != format_offset(13_113_456_789)
    assert format_offset(2_100_000) == "+2.100ms"
