"""Rewritten code keeps the original lines: tracebacks, settrace/pdb, coverage and f_lineno."""

from __future__ import annotations

import asyncio
import bdb
import sys
import traceback
from types import CodeType

import pytest
from opentelemetry.sdk.trace import sampling

from otel_scope.compile_time import configure, rewrite_source
from otel_scope.config.settings import Settings
from otel_scope.targets.plan import CapturePlan
from rewrite_samples.support import line_of, load, load_original, memory_spans, sample_path

SAMPLE = str(sample_path("constructs"))

CALLS = [
    ("assignments", lambda m: m.assignments(1)),
    ("loops", lambda m: m.loops(4)),
    ("handlers raising", lambda m: m.handlers(True)),
    ("handlers", lambda m: m.handlers(False)),
    ("return_in_finally", lambda m: m.return_in_finally()),
    ("matcher", lambda m: [m.matcher(v) for v in ({"kind": 1}, [1, 2], "abc", 0.5)]),
    ("outer", lambda m: m.outer(3)),
    ("use_global", lambda m: m.use_global(1)),
    ("gen", lambda m: list(m.gen(3))),
    ("delegate", lambda m: list(m.delegate(2))),
    ("coro", lambda m: asyncio.run(m.coro(0, 2))),
    ("greet", lambda m: m.Child().greet()),
    ("decorated", lambda m: m.decorated(4)),
    ("multiline", lambda m: m.multiline(1)),
    ("fails_multiline", lambda m: m.fails_multiline(1)),
]


def _trace(call, module):
    """(function, event, line) for every trace event of the sample's own frames."""
    seen = []

    def tracer(frame, event, arg):
        if frame.f_code.co_filename != SAMPLE:
            return None
        seen.append((frame.f_code.co_name, event, frame.f_lineno))
        return tracer

    sys.settrace(tracer)
    try:
        call(module)
    except ZeroDivisionError:
        pass
    finally:
        sys.settrace(None)
    return seen


@pytest.fixture(scope="module")
def original():
    return load_original("constructs")


@pytest.fixture(scope="module", params=["locals", "lines"])
def rewritten(request):
    return load("constructs", level=request.param)


@pytest.mark.parametrize("recording", [True, False], ids=["recording", "sampled-out"])
@pytest.mark.parametrize(("name", "call"), CALLS, ids=[c[0] for c in CALLS])
def test_settrace_sees_the_same_line_events_as_the_original(original, rewritten, name, call, recording):
    configure(Settings())
    with memory_spans(sampler=None if recording else sampling.ALWAYS_OFF) as exporter:
        expected = _trace(call, original)
        got = _trace(call, rewritten)
    assert got == expected
    assert bool(exporter.get_finished_spans()) == recording


def _lines(code: CodeType) -> set[int]:
    lines = {line for _, _, line in code.co_lines() if line is not None}
    for const in code.co_consts:
        if isinstance(const, CodeType):
            lines |= _lines(const)
    return lines


def test_compiled_code_contains_no_line_the_original_does_not(original, rewritten):
    source = sample_path("constructs").read_text()
    assert _lines(rewritten.REWRITE.code) == _lines(compile(source, SAMPLE, "exec"))


def test_tracebacks_show_the_original_line_and_position_on_a_multiline_statement(original, rewritten):
    configure(Settings())
    with memory_spans():
        results = []
        for module in (original, rewritten):
            with pytest.raises(ZeroDivisionError) as info:
                module.fails_multiline(1)
            tb = info.value.__traceback__
            while tb.tb_next is not None:
                tb = tb.tb_next
            position = None
            if sys.version_info >= (3, 11):
                position = list(tb.tb_frame.f_code.co_positions())[tb.tb_lasti // 2]
            text = traceback.format_exception(info.value)[-2:]
            results.append((tb.tb_lineno, position, text))
    assert results[0] == results[1]
    assert results[1][0] == line_of("constructs", "ml_fail") - 1 or results[1][0] == line_of(
        "constructs", "ml_fail"
    )


def test_a_pdb_style_breakpoint_stops_at_the_original_line_with_the_locals(rewritten):
    stops = []

    class Debugger(bdb.Bdb):
        def user_line(self, frame):
            if self.break_here(frame):
                stops.append((frame.f_lineno, frame.f_locals.get("x")))
            self.set_continue()

    debugger = Debugger()
    line = line_of("constructs", "aug")
    debugger.set_break(SAMPLE, line)
    configure(Settings())
    with memory_spans():
        debugger.runcall(rewritten.assignments, 1)
    debugger.clear_all_breaks()
    assert stops == [(line, 2)]


@pytest.mark.parametrize(
    "body", ["\n        value = e.args[0] + 1", "  value = e.args[0] + 1"], ids=["block", "one-line"]
)
def test_lines_libcst_respaces_keep_their_columns(body):
    # libcst prints "except (A, B) :" back as "except (A, B):"; columns must still be the original.
    source = (
        f"def f(e):\n    try:\n        raise e\n    except (KeyError, ValueError) :{body}\n    return value\n"
    )
    result = rewrite_source(source, "respaced.py", "respaced", {"f": CapturePlan()})
    assert "except (KeyError, ValueError):" in result.generated
    assert result.instrumented == ["f"]
    positions = []
    for code in (compile(source, "respaced.py", "exec"), result.code):
        namespace = {}
        exec(code, namespace)
        with pytest.raises(TypeError) as info:
            namespace["f"](KeyError("text"))
        tb = info.value.__traceback__.tb_next
        where = (
            list(tb.tb_frame.f_code.co_positions())[tb.tb_lasti // 2] if sys.version_info >= (3, 11) else None
        )
        positions.append((tb.tb_lineno, where))
    assert positions[0] == positions[1]
