"""Exception frames: the locals of the frames a runtime-traced call's exception passed through.

Real wrappers, a real SDK pipeline, real exceptions; no recompilation involved.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_scope.config import Settings, parse_pattern
from otel_scope.engine import Engine
from otel_scope.runtime import exception_frames
from otel_scope.runtime.exception_frames import ExceptionFrames
from otel_scope.targets.planner import Request

APPS = Path(__file__).resolve().parent / "apps"


@pytest.fixture
def failing(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(APPS))
    import failing

    return failing


@pytest.fixture
def engine(memory) -> Iterator[Engine]:
    e = Engine(Settings(mode="runtime"))
    e.add_finish_hook(ExceptionFrames(e.serializer, e.excluded).on_finish)
    yield e
    e.remove_all()


def trace(engine: Engine, *patterns: str) -> None:
    for p in patterns:
        engine.add(Request(parse_pattern(p)))


def frames(span) -> list[dict]:
    return [dict(e.attributes) for e in span.events if e.name == "otel_scope.exception.frame"]


def test_the_first_failure_already_shows_the_locals_of_each_user_frame_redacted(
    engine, memory, failing
) -> None:
    trace(engine, "failing:outer")
    with pytest.raises(ZeroDivisionError):
        failing.outer(3)
    (span,) = memory.named("failing.outer")
    outer, inner = frames(span)  # outermost first; both are user code, only outer is traced
    assert outer["code.function.name"] == "failing.outer"
    assert outer["otel_scope.var.x"] == "3" and outer["otel_scope.var.doubled"] == "6"
    assert inner["code.function.name"] == "failing.inner"
    assert inner["code.file.path"].endswith("apps/failing.py")
    assert inner["code.line.number"] == failing.inner.__code__.co_firstlineno + 3
    assert inner["otel_scope.var.half"] == "3"
    assert inner["otel_scope.var.password"] == "[redacted]"
    assert inner["otel_scope.mechanism"] == "runtime"
    assert span.attributes["otel_scope.redacted"] == 1
    assert span.events[0].name == "exception"  # the standard event stays first


def test_standard_library_frames_are_left_out(engine, memory, failing) -> None:
    trace(engine, "failing:parse")
    with pytest.raises(ValueError):
        failing.parse("  {nope ")
    (span,) = memory.named("failing.parse")
    (frame,) = frames(span)
    assert frame["code.function.name"] == "failing.parse"
    assert frame["otel_scope.var.cleaned"] == "'{nope'"


def test_each_traced_call_records_only_its_own_frames(engine, memory, failing) -> None:
    trace(engine, "failing:outer", "failing:inner")
    with pytest.raises(ZeroDivisionError):
        failing.outer(5)
    (outer,) = memory.named("failing.outer")
    (inner,) = memory.named("failing.inner")
    assert [f["code.function.name"] for f in frames(inner)] == ["failing.inner"]
    assert [f["code.function.name"] for f in frames(outer)] == ["failing.outer"]


def test_a_long_untraced_chain_is_cut_to_the_innermost_frames(engine, memory, failing, monkeypatch) -> None:
    trace(engine, "failing:outer")
    monkeypatch.setattr(failing, "inner", lambda y: failing.deep(0, 12))
    with pytest.raises(RecursionError):
        failing.outer(1)
    (span,) = memory.named("failing.outer")
    recorded = frames(span)
    assert len(recorded) == exception_frames.MAX_FRAMES
    assert recorded[-1]["otel_scope.var.n"] == "12"  # the innermost is kept
    assert recorded[-1]["otel_scope.var.marker"] == "'level 12'"


def test_one_capture_per_exception_site_per_interval(engine, memory, failing) -> None:
    trace(engine, "failing:outer", "failing:parse")
    for _ in range(3):
        with pytest.raises(ZeroDivisionError):
            failing.outer(3)
    with pytest.raises(ValueError):
        failing.parse("x")
    counts = [len(frames(s)) for s in memory.named("failing.outer")]
    assert counts == [2, 0, 0]
    assert len(frames(memory.named("failing.parse")[0])) == 1  # another site has its own budget


def test_control_flow_exceptions_and_successful_calls_record_no_frames(engine, memory, failing) -> None:
    trace(engine, "failing:stop", "failing:nap", "failing:exhausted")
    with pytest.raises(SystemExit):
        failing.stop(3)
    with pytest.raises(StopIteration):
        failing.exhausted([])
    assert failing.nap(0) == 0
    assert all(frames(s) == [] for s in memory.spans())


def test_excluded_modules_are_left_out(memory, failing) -> None:
    engine = Engine(Settings(mode="runtime", exclude=(parse_pattern("failing:inner"),)))
    engine.add_finish_hook(ExceptionFrames(engine.serializer, lambda module: module == "failing").on_finish)
    try:
        engine.add(Request(parse_pattern("failing:outer")))
        with pytest.raises(ZeroDivisionError):
            failing.outer(3)
        assert frames(memory.named("failing.outer")[0]) == []
    finally:
        engine.remove_all()
