"""Rewritten programs behave exactly like the originals (property-based, on generated programs).

Hypothesis builds small functions from a grammar of statements (assignments of every kind,
if/for/while/try/with/match, return, yield, comprehensions, walrus, lambdas, closures with
nonlocal, global, del, raise, print). Each one is run from its original source and from its
rewritten form, both while recording and while sampled out; the return value (or the yielded
items), the printed output and the exception (type and message) must be the same, and the
rewrite must instrument the function rather than skip it.
"""

from __future__ import annotations

import contextlib
import io
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import sampling

from budget import examples
from otel_scope.compile_time import configure, rewrite_source
from otel_scope.config.settings import Settings
from otel_scope.targets.plan import CapturePlan
from rewrite_samples.support import memory_spans

NAMES = ("a", "b", "c", "x", "y")
PRELUDE = "import contextlib\nG = 0\n\n"

names = st.sampled_from(NAMES)
small = st.integers(-3, 5)


@st.composite
def expressions(draw, depth=0):
    kind = draw(st.integers(0, 6 if depth < 2 else 1))
    if kind == 0:
        return str(draw(small))
    if kind == 1:
        return draw(names)
    if kind == 2:
        op = draw(st.sampled_from(["+", "-", "*", "//", "%"]))
        return f"({draw(expressions(depth + 1))} {op} {draw(expressions(depth + 1))})"
    if kind == 3:
        return f"len([{draw(expressions(depth + 1))}, {draw(names)}])"
    if kind == 4:
        return f"[v * 2 for v in range({draw(st.integers(0, 3))})][-1:]"
    if kind == 5:
        return f"(lambda q: q + {draw(expressions(depth + 1))})({draw(small)})"
    return f"({draw(names)} if {draw(names)} else {draw(expressions(depth + 1))})"


@st.composite
def blocks(draw, depth=0, in_loop=False):
    count = draw(st.integers(1, 3))
    return [line for _ in range(count) for line in draw(statements(depth, in_loop))]


def _indent(lines):
    return ["    " + line for line in lines]


@st.composite
def statements(draw, depth=0, in_loop=False):
    simple = [
        "assign",
        "aug",
        "unpack",
        "star",
        "ann",
        "print",
        "return",
        "del",
        "raise",
        "walrus_expr",
        "global",
        "yield",
    ]
    compound = ["if", "for", "while", "try", "with", "match", "closure", "walrus_if", "suite"]
    kinds = simple + (compound if depth < 2 else []) + (["break", "continue"] if in_loop else [])
    kind = draw(st.sampled_from(kinds))
    e = lambda: draw(expressions())  # noqa: E731
    n = lambda: draw(names)  # noqa: E731
    if kind == "assign":
        return [f"{n()} = {e()}"]
    if kind == "aug":
        return [f"{n()} {draw(st.sampled_from(['+=', '-=', '*=']))} {e()}"]
    if kind == "unpack":
        return [f"{n()}, ({n()}, {n()}) = {e()}, ({e()}, {e()})"]
    if kind == "star":
        return [f"{n()}, *{n()} = [{e()}, {e()}, {e()}]"]
    if kind == "ann":
        return [f"{n()}: int = {e()}"]
    if kind == "print":
        return [f"print({e()}, {e()})"]
    if kind == "return":
        return [f"return {e()}"]
    if kind == "del":
        return [f"del {n()}"]
    if kind == "raise":
        return [f"raise ValueError({e()})"]
    if kind == "walrus_expr":
        return [f"print(({n()} := {e()}))"]
    if kind == "global":
        return ["global G", f"G = G + {e()}", "print('G', G)"]
    if kind == "yield":
        return [f"{n()} = yield {e()}"]
    if kind == "break":
        return ["break"]
    if kind == "continue":
        return ["continue"]
    if kind == "suite":
        return [f"if {e()}: {n()} = {e()}; print({e()})"]
    body = lambda loop=in_loop: _indent(draw(blocks(depth + 1, loop)))  # noqa: E731
    if kind == "if":
        return [f"if {e()}:", *body(), "else:", *body()]
    if kind == "walrus_if":
        return [f"if ({n()} := {e()}) > 1:", *body()]
    if kind == "for":
        return [f"for {n()} in range({draw(st.integers(0, 4))}):", *body(True)]
    if kind == "while":
        counter = f"w{depth}"
        return [f"{counter} = 0", f"while {counter} < 3:", f"    {counter} += 1", *body(True)]
    if kind == "try":
        return [
            "try:",
            *body(),
            "except (ArithmeticError, NameError) as err:",
            "    print(type(err).__name__)",
            *body(),
            "finally:",
            *body(),
        ]
    if kind == "with":
        return [f"with contextlib.nullcontext({e()}) as {n()}:", *body()]
    if kind == "match":
        return [
            f"match [{e()}, {e()}]:",
            f"    case [0, {n()}]:",
            *_indent(body()),
            f"    case [first, *{n()}] if first > 1:",
            *_indent(body()),
            "    case _:",
            "        pass",
        ]
    # closure with nonlocal
    var = n()
    return [
        f"{var} = {e()}",
        "def inner(step):",
        f"    nonlocal {var}",
        f"    {var} = {var} + step",
        f"    return {var}",
        f"print(inner({e()}), inner({e()}))",
    ]


@st.composite
def programs(draw):
    params = ", ".join(NAMES[:2])
    body = draw(blocks())
    return PRELUDE + f"def target({params}):\n" + "\n".join(_indent(body)) + "\n"


def _run(code, args):
    namespace = {"__name__": "generated"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            exec(code, namespace)
            result = namespace["target"](*args)
            if hasattr(result, "__next__"):  # a generator: drive it, sending values back in
                items = []
                try:
                    value = next(result)
                    while len(items) < 20:
                        items.append(value)
                        value = result.send(len(items))
                except StopIteration as stop:
                    items.append(("returned", stop.value))
                result = items
            outcome = ("ok", repr(result))
        except Exception as exc:  # the program's own error: compared, not a test failure
            outcome = ("raised", type(exc).__name__, str(exc))
    return outcome, out.getvalue()


@pytest.mark.parametrize("level", ["locals", "lines", "expressions"])  # one search each: xdist spreads them
@settings(max_examples=examples(134), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), st.tuples(small, small))
def test_rewritten_programs_return_print_and_raise_exactly_like_the_originals(level, source, args):
    try:
        original = compile(source, "<generated>", "exec")
    except SyntaxError:
        return  # the grammar can make e.g. a "return" with a value in a generator... skip those
    result = rewrite_source(source, "<generated>", "generated", {"target": CapturePlan(level=level)})
    assert result.instrumented == ["target"], (result.skipped, textwrap.indent(source, "  "))
    expected = _run(original, args)
    configure(Settings(loop_sample=2, max_events=20))
    try:
        with memory_spans() as exporter:
            assert _run(result.code, args) == expected, source
            assert exporter.get_finished_spans()
        with memory_spans(sampler=sampling.ALWAYS_OFF):
            assert _run(result.code, args) == expected, source
    finally:
        configure(Settings())
