"""The ``--where`` predicate language: a small, safe filter over captured values.

``otel-scope history --where 'remaining < 0'`` (and the web view) select the calls and events
whose captured variables, arguments or return values satisfy a condition. The text comes from
the user and the values from the traced program, so nothing here ever reaches ``eval``: the text
is tokenised and parsed by hand into a tree of plain objects, and the only thing a predicate can
do is compare values.

Grammar (precedence from loosest to tightest)::

    predicate  := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | "(" or ")" | comparison
    comparison := operand (OP operand)+        OP is one of < <= > >= == !=
    operand    := NAME | NUMBER | STRING | None | True | False

``NAME`` is an identifier, optionally dotted (``self.count``, ``order.id``), looked up as a whole
in the mapping the caller passes; chained comparisons (``0 < x <= 10``) mean what they mean in
Python. Captured values are stored as safe reprs (strings), so a value is read back as the number,
``None``, boolean or string its repr spells before comparing; a name that was not captured makes
its comparison false, so ``x < 0`` never matches a call that has no ``x`` (and ``not x < 0``
matches every call that has none).
"""

from __future__ import annotations

import ast
import json
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from otel_scope import semconv

ACCEPTED = (
    "accepted: NAME OP VALUE (OP is < <= > >= == !=), and/or/not, parentheses, "
    "numbers, 'strings', None, True, False; NAME is a captured variable, argument or 'return'"
)

_OPS: dict[str, Callable[[Any, Any], Any]] = {  # operands are whatever was captured
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_KEYWORDS = frozenset({"and", "or", "not"})
_CONSTANTS: dict[str, object] = {"None": None, "True": True, "False": False}
_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op><=|>=|==|!=|<|>)
  | (?P<paren>[()])
    """,
    re.VERBOSE,
)
# Reading a captured repr back as a value: only short texts can be numbers or constants, and
# only quoted ones can be strings; anything longer stays the text it is.
_MAX_LITERAL = 4096
_MISSING = object()


class QueryError(ValueError):
    """The predicate text is malformed; the message is one line naming the problem and the forms."""


class Predicate(Protocol):
    """A compiled condition over one call's or event's captured values."""

    def matches(self, values: Mapping[str, object]) -> bool:
        """Whether the values (name -> captured value or repr) satisfy the condition."""
        ...


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    column: int


@dataclass(frozen=True)
class _Name:
    name: str

    def value(self, values: Mapping[str, object]) -> object:
        return coerce(values[self.name]) if self.name in values else _MISSING


@dataclass(frozen=True)
class _Literal:
    literal: object

    def value(self, values: Mapping[str, object]) -> object:
        return self.literal


_Operand = _Name | _Literal


@dataclass(frozen=True)
class _Comparison:
    operands: tuple[_Operand, ...]
    ops: tuple[str, ...]

    def matches(self, values: Mapping[str, object]) -> bool:
        resolved = [o.value(values) for o in self.operands]
        return all(_compare(op, a, b) for op, a, b in zip(self.ops, resolved, resolved[1:], strict=False))


@dataclass(frozen=True)
class _Not:
    inner: Predicate

    def matches(self, values: Mapping[str, object]) -> bool:
        return not self.inner.matches(values)


@dataclass(frozen=True)
class _All:
    parts: tuple[Predicate, ...]

    def matches(self, values: Mapping[str, object]) -> bool:
        return all(p.matches(values) for p in self.parts)


@dataclass(frozen=True)
class _Any:
    parts: tuple[Predicate, ...]

    def matches(self, values: Mapping[str, object]) -> bool:
        return any(p.matches(values) for p in self.parts)


@dataclass(frozen=True)
class Where:
    """A compiled ``--where`` predicate: the source text, its tree and the names it reads.

    ``names`` lets a reader skip (or pre-select in SQL) everything that captured none of them.
    """

    text: str
    tree: Predicate
    names: frozenset[str]

    def matches(self, values: Mapping[str, object]) -> bool:
        return self.tree.matches(values)


def coerce(value: object) -> object:
    """A captured value as the Python value its repr spells (numbers, None, booleans, strings).

    Captures are safe reprs: ``-3``, ``'itemA'``, ``None``, ``Environment(...)``. Quoted reprs
    are read with :func:`ast.literal_eval`, which only accepts literals (never calls anything).
    Anything that is not a plain literal stays the text it is.
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text or len(text) > _MAX_LITERAL:
        return value
    if text in _CONSTANTS:
        return _CONSTANTS[text]
    if text[0] in "'\"" and text[-1] == text[0] and len(text) > 1:
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return value
        return parsed if isinstance(parsed, str) else value
    if text[0] in "-+.0123456789":
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                continue
    return value


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compare(op: str, left: object, right: object) -> bool:
    """One comparison, false when a side is missing or when ordering values of unlike kinds."""
    if left is _MISSING or right is _MISSING:
        return False
    if op in ("==", "!="):
        equal = left == right if _number(left) == _number(right) else False
        return equal if op == "==" else not equal
    if (_number(left) and _number(right)) or (isinstance(left, str) and isinstance(right, str)):
        return bool(_OPS[op](left, right))
    return False


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenise(text)
        self.position = 0
        self.names: set[str] = set()

    def error(self, what: str, token: _Token | None = None) -> QueryError:
        token = token or self.peek()
        where = f"at column {token.column + 1}" if token else "at the end"
        return QueryError(f"where {self.text!r}: {what} {where}; {ACCEPTED}")

    def peek(self) -> _Token | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "name" and token.text == word:
            self.position += 1
            return True
        return False

    def parse(self) -> Where:
        if not self.tokens:
            raise QueryError(f"where {self.text!r}: the condition is empty; {ACCEPTED}")
        tree = self.parse_or()
        leftover = self.peek()
        if leftover is not None:
            raise self.error(f"unexpected {leftover.text!r}", leftover)
        if not self.names:
            raise QueryError(f"where {self.text!r}: the condition names no captured value; {ACCEPTED}")
        return Where(self.text, tree, frozenset(self.names))

    def parse_or(self) -> Predicate:
        parts = [self.parse_and()]
        while self.keyword("or"):
            parts.append(self.parse_and())
        return parts[0] if len(parts) == 1 else _Any(tuple(parts))

    def parse_and(self) -> Predicate:
        parts = [self.parse_not()]
        while self.keyword("and"):
            parts.append(self.parse_not())
        return parts[0] if len(parts) == 1 else _All(tuple(parts))

    def parse_not(self) -> Predicate:
        if self.keyword("not"):
            return _Not(self.parse_not())
        token = self.peek()
        if token is not None and token.text == "(":
            self.position += 1
            inner = self.parse_or()
            closing = self.peek()
            if closing is None or closing.text != ")":
                raise self.error("expected ')'", closing)
            self.position += 1
            return inner
        return self.parse_comparison()

    def parse_comparison(self) -> Predicate:
        operands = [self.parse_operand()]
        ops: list[str] = []
        while (token := self.peek()) is not None and token.kind == "op":
            self.position += 1
            ops.append(token.text)
            operands.append(self.parse_operand())
        if not ops:
            raise self.error(
                "expected a comparison operator (< <= > >= == !=)",
                self.peek(),
            )
        return _Comparison(tuple(operands), tuple(ops))

    def parse_operand(self) -> _Operand:
        token = self.peek()
        if token is None:
            raise self.error("the condition ends too soon: expected a name or a value")
        if token.kind == "number":
            self.position += 1
            return _Literal(float(token.text) if any(c in token.text for c in ".eE") else int(token.text))
        if token.kind == "string":
            self.position += 1
            return _Literal(ast.literal_eval(token.text))
        if token.kind == "name" and token.text in _CONSTANTS:
            self.position += 1
            return _Literal(_CONSTANTS[token.text])
        if token.kind == "name" and token.text not in _KEYWORDS:
            self.position += 1
            self.names.add(token.text)
            return _Name(token.text)
        raise self.error(f"expected a name or a value, not {token.text!r}", token)


def _tokenise(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise QueryError(
                f"where {text!r}: cannot read {text[position : position + 12]!r} at column {position + 1}; "
                f"{ACCEPTED}"
            )
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(_Token(kind, match.group(), position))
        position = match.end()
    return tokens


def captured_values(attributes: Mapping[str, Any]) -> dict[str, object]:
    """The names a predicate can read on one span or event, from its otel-scope attributes.

    Arguments (``otel_scope.arg.<name>``) and compile-time variables (``otel_scope.var.<name>``)
    by their own name, the return value as ``return``, an expression by its source text, a
    state change by its attribute name (the value after the change). One mapping for every
    reader keeps the terminal and the web view agreeing on what ``x`` means.
    """
    values: dict[str, object] = {}
    for key, value in attributes.items():
        for prefix in (semconv.ARG_PREFIX, semconv.VAR_PREFIX):
            # Names have no dots; otel_scope.var.<name>.type is the value's type, not a value.
            if key.startswith(prefix) and "." not in key[len(prefix) :]:
                values[key[len(prefix) :]] = value
    if semconv.RETURN_VALUE in attributes:
        values["return"] = attributes[semconv.RETURN_VALUE]
    if semconv.EXPRESSION_TEXT in attributes and semconv.EXPRESSION_VALUE in attributes:
        values[str(attributes[semconv.EXPRESSION_TEXT])] = attributes[semconv.EXPRESSION_VALUE]
    if semconv.STATE_ATTRIBUTE in attributes and semconv.STATE_AFTER in attributes:
        values[str(attributes[semconv.STATE_ATTRIBUTE])] = attributes[semconv.STATE_AFTER]
    return values


def compile_where(text: str) -> Where:
    """Parse a ``--where`` condition once; raises :class:`QueryError` with a one-line message."""
    return _Parser(text).parse()


# -- a cheap superset in SQL ---------------------------------------------------------------------
# Where the store keeps what captured_values reads: a span's attributes (a JSON object) and its
# events (a JSON array of {"name", "time_ns", "attributes"}).
_PLAIN_INT = "(length({d}) BETWEEN 1 AND 18 AND {d} NOT GLOB '*[^0-9]*')"  # digits only: exact as an integer
_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


class _Sql:
    """Builds the prefilter's SQL text with named parameters (``:w0``, ``:w1``...), never splicing
    a user's text into the statement."""

    def __init__(self) -> None:
        self.params: dict[str, object] = {}

    def param(self, value: object) -> str:
        name = f"w{len(self.params)}"
        self.params[name] = value
        return f":{name}"

    def value_test(self, value: str, op: str, literal: object) -> str | None:
        """SQL true for a stored value ``value`` (an SQL expression) whenever Python's comparison
        of its coerced value with ``literal`` can be true; ``None`` when no cheap test is sure."""
        if op == "!=" or literal is None or isinstance(literal, bool):
            return None  # a missing or unlike value can make these true: no narrowing
        if _number(literal):
            sql_op = "=" if op == "==" else op
            bound = self.param(literal)
            digits = f"(CASE WHEN substr({value}, 1, 1) = '-' THEN substr({value}, 2) ELSE {value} END)"
            return (
                f"(CASE typeof({value}) WHEN 'null' THEN 0 WHEN 'integer' THEN {value} {sql_op} {bound} "
                f"WHEN 'real' THEN {value} {sql_op} {bound} "
                f"WHEN 'text' THEN (CASE WHEN {_PLAIN_INT.format(d=digits)} "
                f"THEN CAST({value} AS INTEGER) {sql_op} {bound} ELSE 1 END) ELSE 1 END)"
            )
        if isinstance(literal, str) and op == "==" and literal:
            # A repr equal to the text contains it, unless it spells it with escapes or joins
            # several literals ('a' 'b'): those stay candidates.
            quotes = f"(length({value}) - length(replace(replace({value}, '''', ''), '\"', '')))"
            return (
                f"(typeof({value}) = 'text' AND (instr({value}, {self.param(literal)}) > 0 "
                f"OR instr({value}, '\\') > 0 OR {quotes} > 2))"
            )
        return None

    def name_test(self, name: str, op: str, literal: object) -> str | None:
        """SQL true when some value the span or one of its events captured as ``name`` can pass."""
        keys = [semconv.ARG_PREFIX + name, semconv.VAR_PREFIX + name]
        if name == "return":
            keys.append(semconv.RETURN_VALUE)
        tests: list[str] = []
        for key in keys if "." not in name else []:
            # Each value read once, as a column of json_each/json_tree, after a text search for
            # its key (most spans do not have it): a few passes in C per span, no Python.
            on_span, in_event = (
                self.value_test("a.value", op, literal),
                self.value_test("t.value", op, literal),
            )
            if on_span is None or in_event is None:
                return None
            key_text, key_name = self.param(json.dumps(key)), self.param(key)
            tests.append(
                f"(instr(attributes, {key_text}) AND EXISTS (SELECT 1 FROM json_each(attributes) a "
                f"WHERE a.key = {key_name} AND {on_span}))"
            )
            tests.append(
                f"(instr(events, {key_text}) AND EXISTS (SELECT 1 FROM json_tree(events) t "
                f"WHERE t.key = {key_name} AND {in_event}))"
            )
        # Expressions and state changes name their value by text: those spans stay candidates.
        for key in (semconv.EXPRESSION_TEXT, semconv.STATE_ATTRIBUTE):
            key_text = self.param(json.dumps(key))
            tests.append(f"instr(events, {key_text}) OR instr(attributes, {key_text})")
        return "(" + " OR ".join(tests) + ")"

    def mentions(self, names: Iterable[str]) -> str | None:
        """SQL true when the span's stored text mentions every one of ``names``: each is read from
        an attribute key, an expression's text or a state change's attribute, so a span (or an
        event of it) that captured the name has it somewhere in its attributes or events."""
        tests = [
            f"(instr(attributes, {p}) OR instr(events, {p}))"
            for p in (self.param(name) for name in sorted(set(names)))
        ]
        return "(" + " AND ".join(tests) + ")" if tests else None

    def tree(self, node: Predicate) -> str | None:
        """A superset of ``node`` in SQL, or ``None`` where every span must stay a candidate."""
        if isinstance(node, _All):
            parts = [p for p in (self.tree(n) for n in node.parts) if p is not None]
            return "(" + " AND ".join(parts) + ")" if parts else None
        if isinstance(node, _Any):
            alternatives = [self.tree(n) for n in node.parts]
            if any(p is None for p in alternatives):
                return None  # a side that passes anything makes the whole pass anything
            return "(" + " OR ".join(str(p) for p in alternatives) + ")"
        if isinstance(node, _Comparison):
            # A comparison is false when one of its names was not captured, so a span that can
            # pass mentions them all; plain integers and string equality narrow further.
            pairs = zip(node.ops, node.operands, node.operands[1:], strict=False)
            parts = [p for p in (self.pair(op, a, b) for op, a, b in pairs) if p is not None]
            names = [o.name for o in node.operands if isinstance(o, _Name)]
            mentioned = self.mentions(names)
            if mentioned is not None:
                parts.insert(0, mentioned)
            return "(" + " AND ".join(parts) + ")" if parts else None
        # not: the inner condition is false, so the negation true, wherever a value is missing
        # or unlike: no text test is a superset of that, and every span stays a candidate.
        return None

    def pair(self, op: str, left: _Operand, right: _Operand) -> str | None:
        if isinstance(left, _Name) and isinstance(right, _Literal):
            return self.name_test(left.name, op, right.literal)
        if isinstance(left, _Literal) and isinstance(right, _Name):
            return self.name_test(right.name, _FLIPPED[op], left.literal)
        return None


def prefilter_sql(where: Where) -> tuple[str | None, dict[str, object]]:
    """An SQL condition over a stored span's ``attributes`` and ``events`` columns that is true
    for every span :func:`where` could select (a superset: the predicate still decides), with its
    parameters; ``None`` when every span must stay a candidate (a ``not``, or an ``or`` with
    such a side: ``not x < 0`` also holds for a call that captured no ``x``). A comparison needs
    its names mentioned; numbers spelled as plain integers and string equality are also tested in
    SQL, so a search for ``remaining < 0`` decodes only the spans where some ``remaining`` is
    negative."""
    sql = _Sql()
    return sql.tree(where.tree), sql.params
