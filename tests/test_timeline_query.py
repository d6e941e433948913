"""The ``--where`` predicate language: what it matches, and one clear message for what it rejects."""

from __future__ import annotations

import pytest

from otel_scope import semconv
from otel_scope.timeline.query import QueryError, captured_values, coerce, compile_where


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
