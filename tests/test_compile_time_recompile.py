"""On-demand recompilation: a live function starts emitting events, and restore undoes it exactly."""

from __future__ import annotations

import pytest

from otel_scope.compile_time import RecompileError, configure, recompile
from otel_scope.config.settings import Settings
from otel_scope.targets.plan import CapturePlan
from rewrite_samples.support import line_of, load_original, memory_spans, only_span, var_events


@pytest.fixture
def spans():
    configure(Settings())
    with memory_spans() as exporter:
        yield exporter


@pytest.fixture
def mod():
    return load_original("constructs")


def test_existing_references_see_the_new_code_and_restore_puts_back_the_same_object(spans, mod):
    original = mod.loops.__code__
    stored = {"handler": mod.loops}
    alias = mod.loops
    assert mod.loops(3) == 6 and spans.get_finished_spans() == ()
    done = recompile(mod.loops, CapturePlan(target="constructs:loops"))
    assert stored["handler"](3) == alias(3) == 6
    loops = [s for s in spans.get_finished_spans() if s.name.endswith(".loops")]
    assert len(loops) == 2
    assert var_events(loops[0], "i")[0] == (line_of("constructs", "for"), "0")
    done.restore()
    done.restore()  # idempotent
    assert mod.loops.__code__ is original
    spans.clear()
    assert alias(3) == 6 and spans.get_finished_spans() == ()


def test_bound_methods_and_zero_argument_super_work_after_recompiling(spans, mod):
    child = mod.Child()
    bound = child.greet
    done = recompile(bound, CapturePlan())
    try:
        assert bound() == "base:Child"
        assert mod.Child().greet() == "base:Child"
        assert var_events(spans.get_finished_spans()[0], "parent") == [
            (line_of("constructs", "super"), "'base'")
        ]
    finally:
        done.restore()


def test_a_decorators_closure_reaches_the_recompiled_function(spans, mod):
    done = recompile(mod.decorated, CapturePlan())  # unwrapped through __wrapped__
    try:
        assert mod.decorated(5) == 10
        assert var_events(only_span(spans, ".decorated"), "doubled") == [
            (line_of("constructs", "decorated"), "10")
        ]
    finally:
        done.restore()


def test_a_call_in_flight_finishes_under_the_code_it_started_with(spans, mod):
    running = mod.gen(3)
    assert next(running) == 0
    done = recompile(mod.gen, CapturePlan())
    try:
        assert list(running) == [1, 2]
        assert spans.get_finished_spans() == ()
        assert list(mod.gen(2)) == [0, 1]
        assert len(spans.get_finished_spans()) == 1
    finally:
        done.restore()


def test_one_recompilation_is_measured_and_fast(mod):
    done = recompile(mod.multiline, CapturePlan(level="lines"))
    done.restore()
    assert 0 < done.seconds < 5


def test_things_that_cannot_be_recompiled_say_why(mod):
    with pytest.raises(RecompileError, match="not a Python function"):
        recompile(len, CapturePlan())
    with pytest.raises(RecompileError, match="locals"):
        recompile(mod.uses_locals, CapturePlan())
    square = lambda v: v * v  # noqa: E731
    with pytest.raises(RecompileError):
        recompile(square, CapturePlan())
