"""The ``--where`` predicate language: what it matches, and one clear message for what it rejects."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_scope import semconv
from otel_scope.store import SpanStore
from otel_scope.store.records import EventRecord, SpanRecord
from otel_scope.timeline.query import QueryError, Where, captured_values, coerce, compile_where, prefilter_sql
from otel_scope.timeline.reader import TraceReader


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("remaining < 0", {"remaining": "-3"}, True),
        ("remaining < 0", {"remaining": "4"}, False),
        ("remaining <= 0", {"remaining": "0"}, True),
        ("total >= 2.5", {"total": "2.5"}, True),
        ("total > 1e3", {"total": "1001"}, True),
        ("item == 'itemA'", {"item": "'itemA'"}, True),
        ('item != "itemA"', {"item": "'itemB'"}, True),
        ("result == None", {"result": "None"}, True),
        ("ok == True", {"ok": "True"}, True),
        ("ok == 1", {"ok": "True"}, False),
        ("0 < x <= 10", {"x": "10"}, True),
        ("0 < x <= 10", {"x": "11"}, False),
        ("x < 0 or y > 5", {"x": "1", "y": "6"}, True),
        ("x < 0 and y > 5", {"x": "1", "y": "6"}, False),
        ("not x < 0", {"x": "1"}, True),
        ("not (x < 0 or y < 0) and z == 'ok'", {"x": "1", "y": "2", "z": "'ok'"}, True),
        ("self.count > 2", {"self.count": "3"}, True),
        ("x == y", {"x": "7", "y": "7"}, True),
        ("return == 'accepted'", {"return": "'accepted'"}, True),
        ("env == 'Environment(...)'", {"env": "Environment(...)"}, True),
        ("x < 'b'", {"x": "'a'"}, True),
    ],
)
def test_conditions_compare_captured_reprs_as_the_values_they_spell(
    text: str, values: dict[str, object], expected: bool
) -> None:
    assert compile_where(text).matches(values) is expected


def test_a_name_that_was_not_captured_never_satisfies_a_comparison() -> None:
    where = compile_where("remaining < 0")
    assert not where.matches({"other": "-1"})
    assert not compile_where("remaining != 0").matches({})


def test_ordering_values_of_unlike_kinds_is_false_not_an_error() -> None:
    assert not compile_where("x < 0").matches({"x": "'text'"})
    assert not compile_where("x > 0").matches({"x": "None"})
    assert compile_where("x != 0").matches({"x": "'text'"})


def test_the_names_a_condition_reads_are_known_before_matching() -> None:
    assert compile_where("a < 1 or (b == 'x' and not c.d > 2)").names == {"a", "b", "c.d"}


def test_values_are_never_evaluated_as_code() -> None:
    # A capture whose repr is code stays text: comparing it runs nothing.
    assert coerce("__import__('os').system('false')") == "__import__('os').system('false')"
    assert coerce("[1, 2]") == "[1, 2]"
    assert coerce("'quoted'") == "quoted"
    assert coerce(" 12 ") == 12 and coerce("-0.5") == -0.5 and coerce("None") is None
    with pytest.raises(QueryError):
        compile_where("__import__('os').system('true') == 0")


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("", "the condition is empty"),
        ("remaining", "expected a comparison operator"),
        ("remaining < ", "the condition ends too soon"),
        ("x < 0 and", "the condition ends too soon"),
        ("(x < 0", "expected ')'"),
        ("x < 0)", "unexpected ')'"),
        ("x = 0", "cannot read '= 0' at column 3"),
        ("x < 0 y", "unexpected 'y' at column 7"),
        ("1 < 2", "names no captured value"),
        ("x < and", "expected a name or a value, not 'and'"),
        ("x ~ 3", "cannot read '~ 3'"),
    ],
)
def test_a_malformed_condition_gets_one_line_naming_the_problem_and_the_accepted_forms(
    text: str, names: str
) -> None:
    with pytest.raises(QueryError) as caught:
        compile_where(text)
    message = str(caught.value)
    assert names in message, message
    assert "\n" not in message
    assert "accepted: NAME OP VALUE" in message and "and/or/not" in message


def test_captured_values_names_arguments_locals_return_expressions_and_state() -> None:
    span = {
        semconv.ARG_PREFIX + "amount": "0",
        semconv.RETURN_VALUE: "'accepted'",
        semconv.CODE_FUNCTION_NAME: "bank.deposit",
    }
    event = {
        semconv.VAR_PREFIX + "type": "'x'",
        semconv.VAR_PREFIX + "left": "9",
        semconv.VAR_PREFIX + "left" + semconv.VAR_TYPE_SUFFIX: "int",
    }
    state = {semconv.STATE_ATTRIBUTE: "balance", semconv.STATE_BEFORE: "0", semconv.STATE_AFTER: "5"}
    expression = {semconv.EXPRESSION_TEXT: "stock - reserved", semconv.EXPRESSION_VALUE: "7"}
    assert captured_values(span) == {"amount": "0", "return": "'accepted'"}
    assert captured_values(event) == {"type": "'x'", "left": "9"}
    assert captured_values(state) == {"balance": "5"}
    assert captured_values(expression) == {"stock - reserved": "7"}


# Values as the store may hold them: reprs in every spelling coerce() reads, JSON numbers and
# booleans, escapes, joined literals, and text that is not a literal at all.
_STORED_VALUES: list[object] = [
    "-3", "0", "4", "-0012", "007", "2.5", "1e3", "-inf", "1_000", " 5 ", "+4", "--5", "99999999999999999999",
    "'itemA'", '"itemA"', "'item\\x41'", "'item' 'A'", "'it''emA'", "itemA", "'itemAB'", "None", "True",
    "Environment(option_1=7)", -3, 2.5, 7, True, False, None, "",
]  # fmt: skip
_CONDITIONS = [
    "remaining < 0", "remaining <= 0", "remaining > 4", "remaining >= 2.5", "remaining == 7", "0 < remaining",
    "-1 < remaining < 5", "remaining < 1000", "remaining > 500", "item == 'itemA'", "'itemA' == item",
    "item == 'itemA' and remaining < 0", "item == 'itemA' or remaining > 4", "not remaining < 0",
    "remaining != 5", "remaining == None", "remaining == True", "item < 'j'", "remaining == item",
    "not (remaining < 0 and item == 'itemA')", "remaining < 0 or not item == 'itemA'",
    "item == 'itemA' and not remaining > 4", "not not remaining < 0", "remaining < 0 or remaining == item",
]  # fmt: skip


def _stored_spans() -> list[SpanRecord]:
    """One span per (value, place): as an argument, a local on an event, and the return value;
    and calls that captured nothing (one with an event that captured nothing either)."""
    spans, number = [], 0
    for events in ([], [EventRecord(semconv.EVENT_LINE, 1, {semconv.CODE_LINE_NUMBER: 3})]):
        number += 1
        span = SpanRecord("ab" * 16, f"{number:016x}", None, "f", start_ns=number, end_ns=number + 1)
        span.attributes[semconv.MECHANISM] = semconv.MECHANISM_RUNTIME
        span.events = events
        spans.append(span)
    for value in _STORED_VALUES:
        for place in ("arg", "event", "return"):
            number += 1
            span = SpanRecord("ab" * 16, f"{number:016x}", None, "f", start_ns=number, end_ns=number + 1)
            span.attributes[semconv.MECHANISM] = semconv.MECHANISM_RUNTIME
            if place == "arg":
                span.attributes[semconv.ARG_PREFIX + "remaining"] = value
                span.attributes[semconv.ARG_PREFIX + "item"] = value
            elif place == "event":
                attributes = {semconv.VAR_PREFIX + "remaining": value, semconv.VAR_PREFIX + "item": value}
                span.events.append(EventRecord(semconv.EVENT_LOCALS, number, attributes))
            else:
                span.attributes[semconv.RETURN_VALUE] = value
                span.attributes[semconv.ARG_PREFIX + "item"] = value
            spans.append(span)
    return spans


def _selected(where: Where, span: SpanRecord) -> bool:
    # What where_entries lists: the call itself when its values pass (whatever it captured: a
    # negation passes without them), or one of its events that captured a name the condition
    # reads and passes with its call's values.
    call = captured_values(span.attributes)
    if where.matches(call):
        return True
    return any(
        not where.names.isdisjoint(own := captured_values(e.attributes)) and where.matches({**call, **own})
        for e in span.events
    )


@pytest.mark.parametrize("condition", _CONDITIONS)
def test_the_sql_prefilter_keeps_every_span_the_condition_selects(condition: str, tmp_path: Path) -> None:
    where = compile_where(condition.replace("remaining", "return") if "return" in condition else condition)
    spans = _stored_spans()
    store = SpanStore(tmp_path / "store.sqlite3")
    store.add_records(spans)
    store.close()
    expected = {s.span_id for s in spans if _selected(where, s)}
    with TraceReader(tmp_path / "store.sqlite3", "ab" * 16) as reader:
        candidates = {s.span_id for s in reader.matching(where)}
    assert expected <= candidates
    if where.text in ("remaining < 0", "item == 'itemA'"):
        assert candidates != {s.span_id for s in spans}  # and it narrows what is decoded


def test_the_sql_prefilter_narrows_plain_integers_and_string_equality() -> None:
    narrowed, params = prefilter_sql(compile_where("remaining < 0 and item == 'a'"))
    assert narrowed is not None and 0 in params.values() and "a" in params.values()
    assert "itemA" not in (narrowed or "")  # values travel as parameters, never in the SQL text
    # Comparisons it cannot test in SQL still need their names mentioned.
    for text in ("remaining != 1", "a == b", "x == None", "x < 0 and not y < 0"):
        narrowed, params = prefilter_sql(compile_where(text))
        assert narrowed is not None and set(params.values()) >= {"x" if "x" in text else text.split()[0]}


def test_the_sql_prefilter_never_narrows_a_negation_or_an_or_with_an_unnarrowed_side() -> None:
    # Each holds for a call that captured none of the names, so every span stays a candidate.
    for text in ("not remaining < 0", "not (x < 0 and y < 0)", "x < 0 or not y < 0", "not not x < 0"):
        assert prefilter_sql(compile_where(text))[0] is None
