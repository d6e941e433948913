"""A call that will not record skips the probe, and never past a change that makes it record.

The span core remembers the last context it refused (parent not sampled, instrumentation
suppressed, no SDK, an ``ALWAYS_OFF`` sampler) with the provider it refused under; a rewritten
function tests both in its entry test and runs its original body without calling its probe.
Each test here runs real rewritten code under a real SDK provider and real attached contexts,
and changes one thing the answer depends on between two calls in the same context: the next
call must record.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import sampling
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from otel_scope._sdk import SUPPRESS_INSTRUMENTATION_KEY, global_provider, set_global_provider
from otel_scope.capture import sampling as call_sampling
from otel_scope.compile_time import configure, probes, recorder
from otel_scope.compile_time.recorder import Probe
from otel_scope.config.settings import Settings
from otel_scope.sessions import state as session_state
from otel_scope.sessions.session import session
from otel_scope.targets.plan import CapturePlan
from rewrite_samples.support import load, memory_spans
from runtime_samples import hybrid
from sdk import add_target

SOURCE = """\
def loop(n):
    total = 0
    for i in range(n):
        square = i * i
        total += square
    return total
"""


def _rewritten(target: str = "m:loop") -> Any:
    """``loop`` rewritten at level locals; ``m:loop`` names it exactly (no call sampler)."""
    return load("refusals", {"*": CapturePlan(level="locals", target=target)}, source=SOURCE)


def _probe(module: Any) -> Probe:
    (probe,) = probes(module.__name__)
    return probe


def _unsampled() -> Context:
    return trace.set_span_in_context(NonRecordingSpan(SpanContext(1, 2, False, TraceFlags(0))), Context())


def _sampled() -> Context:
    return trace.set_span_in_context(NonRecordingSpan(SpanContext(3, 4, False, TraceFlags(1))), Context())


class _Attached:
    """``ctx`` current for the duration of a ``with`` block (real attach and detach)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def __enter__(self) -> Context:
        self.token = otel_context.attach(self.ctx)
        return self.ctx

    def __exit__(self, *exc: object) -> None:
        otel_context.detach(self.token)


def _entries(module: Any, calls: int) -> int:
    """How many of ``calls`` calls of ``module.loop`` called ``Probe.enter`` (a real profiler)."""
    enter = Probe.enter.__code__
    seen = 0

    def profile(frame: FrameType, event: str, arg: object) -> None:
        nonlocal seen
        if event == "call" and frame.f_code is enter:
            seen += 1

    sys.setprofile(profile)
    try:
        for _ in range(calls):
            assert module.loop(3) == 5
    finally:
        sys.setprofile(None)
    return seen


@pytest.fixture
def settings() -> Iterator[None]:
    configure(Settings())
    yield
    configure(Settings())
    call_sampling.budget().retired.clear()


@pytest.fixture
def no_provider() -> Iterator[None]:
    previous = global_provider()
    set_global_provider(None)
    try:
        yield
    finally:
        set_global_provider(previous)


def test_calls_under_a_context_refused_already_skip_the_probe_and_record_nothing(settings):
    module = _rewritten()
    with memory_spans() as exporter, _Attached(_unsampled()):
        assert _entries(module, 20) == 1  # the first call asks; the others see its refusal
    assert exporter.get_finished_spans() == ()


def test_a_sampled_span_made_current_after_a_refusal_is_recorded(settings):
    module = _rewritten()
    with memory_spans() as exporter, _Attached(_unsampled()):
        module.loop(3)
        with _Attached(_sampled()):
            assert module.loop(3) == 5
        module.loop(3)  # back under the unsampled parent: refused again
    (span,) = exporter.get_finished_spans()
    assert span.name.endswith(".loop") and span.context.trace_id == 3


def test_a_provider_installed_after_calls_without_one_records_the_next_call(settings, no_provider):
    module = _rewritten()
    with _Attached(Context()):
        assert _entries(module, 3) == 1  # no SDK: refused, and remembered
        with memory_spans() as exporter:  # set as the global provider, the context unchanged
            assert module.loop(3) == 5
    (span,) = exporter.get_finished_spans()
    assert span.name.endswith(".loop")


def test_an_always_off_provider_replaced_by_a_recording_one_records_the_next_call(settings):
    module = _rewritten()
    with _Attached(Context()):
        with memory_spans(sampler=sampling.ALWAYS_OFF) as off:
            assert _entries(module, 3) == 1
        with memory_spans() as exporter:
            module.loop(3)
    assert off.get_finished_spans() == ()
    assert len(exporter.get_finished_spans()) == 1


def test_a_fallback_context_set_after_a_refusal_parents_the_next_call(settings):
    module = _rewritten()
    never_root = sampling.ParentBased(sampling.ALWAYS_OFF)  # a span with no parent is not sampled
    previous = session_state.fallback_context
    with memory_spans(sampler=never_root) as exporter, _Attached(Context()):
        try:
            assert _entries(module, 3) == 1  # no parent, no fallback: refused
            session_state.set_fallback_context(_sampled())  # what a process session does at start
            module.loop(3)
            session_state.set_fallback_context(None)  # and at its end
            assert _entries(module, 3) == 1
        finally:
            session_state.set_fallback_context(previous)
    (span,) = exporter.get_finished_spans()
    assert span.parent is not None and span.parent.span_id == 4


def test_suppressed_instrumentation_records_nothing_and_recording_resumes_once_detached(settings):
    module = _rewritten()
    with memory_spans() as exporter, _Attached(_sampled()) as sampled:
        with _Attached(otel_context.set_value(SUPPRESS_INSTRUMENTATION_KEY, True, sampled)):
            assert _entries(module, 5) == 1
        module.loop(3)
    assert len(exporter.get_finished_spans()) == 1


def test_an_explicit_session_entered_in_a_context_refused_before_records_the_call(settings):
    # In explicit mode nothing records outside a session. The session variable is not part of
    # the OTel context, so that refusal must not be remembered: here the code inside the session
    # attaches the very context that was current (and refused) before it.
    module = _rewritten()
    previous_kind = session_state.kind
    session_state.kind = "explicit"
    try:
        with memory_spans() as exporter, _Attached(_sampled()) as outside:
            assert _entries(module, 3) == 3  # outside a session: refused, never skipped
            with session("work"), _Attached(outside):
                assert module.loop(3) == 5
    finally:
        session_state.kind = previous_kind
    assert [s.name for s in exporter.get_finished_spans() if s.name.endswith(".loop")] != []


@pytest.mark.parametrize("change", ["sampler", "follows"])
def test_a_probe_given_a_sampler_or_a_runtime_wrapper_to_follow_later_sees_every_call(settings, change):
    module = _rewritten()
    probe = _probe(module)
    with memory_spans(), _Attached(_unsampled()):
        assert _entries(module, 3) == 1
        if change == "sampler":
            probe.sampler = call_sampling.sampler_for(probe.name, named_exactly=False)
        else:
            probe.follows = True
        entered = _entries(module, 7)
    if probe.sampler is not None:
        assert probe.sampler.calls == 7  # every call counted, as before the refusal was seen
    else:
        assert entered == 7  # every call asks for the runtime wrapper's span


def test_a_sampled_function_under_an_unsampled_parent_counts_every_call_as_before(settings):
    configure(Settings(call_sample_rate=0))  # after the first calls, only errors would record
    module = _rewritten(target="m:*")  # a wildcard: the function has a call sampler
    sampler = _probe(module).sampler
    assert sampler is not None
    with memory_spans() as exporter, _Attached(_unsampled()):
        entered = _entries(module, 30)
    assert (sampler.calls, sampler.sampled_out) == (30, 25)  # the first 5 admitted, the rest left out
    # The first 5 and the sampler's checks (calls 6, 8, 12, 20: the stride doubles) ask enter();
    # the calls the sampler left out between two checks were decided in the entry test.
    assert entered == 9
    assert exporter.get_finished_spans() == ()


def test_line_numbers_and_results_are_those_of_the_original_on_the_skipping_path(settings):
    module = _rewritten()
    lines: list[int] = []

    def trace_lines(frame: FrameType, event: str, arg: object) -> Any:
        if frame.f_code.co_name == "loop" and event == "line":
            lines.append(frame.f_lineno)
        return trace_lines

    with memory_spans(), _Attached(_unsampled()):
        module.loop(1)  # remembered
        sys.settrace(trace_lines)
        try:
            assert module.loop(2) == 1
        finally:
            sys.settrace(None)
    assert lines == [2, 3, 4, 5, 3, 4, 5, 3, 6]


def test_a_runtime_target_refused_under_an_always_off_provider_records_once_it_is_replaced(
    settings, runtime_engine
):
    add_target(runtime_engine, "runtime_samples.hybrid:work")
    with _Attached(Context()):
        with memory_spans(sampler=sampling.ALWAYS_OFF):
            assert hybrid.work(3) == 3
            assert hybrid.work(3) == 3  # the remembered refusal
        with memory_spans() as exporter:
            assert hybrid.work(4) == 6
    assert [s.name for s in exporter.get_finished_spans()] == ["runtime_samples.hybrid.work"]


def test_a_refusal_remembered_on_one_thread_does_not_hold_back_another_threads_recording_call(settings):
    module = _rewritten()
    results: list[int] = []

    def worker() -> None:
        with _Attached(_sampled()):
            results.append(module.loop(3))

    with memory_spans() as exporter, _Attached(_unsampled()):
        module.loop(3)  # refused and remembered on this thread
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        module.loop(3)
    assert results == [5]
    (span,) = exporter.get_finished_spans()
    assert span.context.trace_id == 3


def test_calls_of_a_sampled_function_after_an_internal_error_are_neither_recorded_nor_counted(settings):
    # An internal error switches compile-time capture off for the process (the program is not
    # affected): calls then run their original body and no call is counted as left out, until
    # the settings are applied again.
    configure(Settings(call_sample_rate=0))
    module = _rewritten(target="m:*")
    sampler = _probe(module).sampler
    assert sampler is not None
    with memory_spans() as exporter:
        for _ in range(10):
            assert module.loop(3) == 5
        recorder._disable(RuntimeError("an internal error"))
        assert _entries(module, 20) == 0
        assert (sampler.calls, sampler.sampled_out) == (10, 5)
        configure(Settings(call_sample_rate=0))  # capture on again: the next 5 calls are kept
        for _ in range(10):
            assert module.loop(3) == 5
    assert (sampler.calls, sampler.sampled_out) == (20, 10)
    assert len([s for s in exporter.get_finished_spans() if s.name.endswith(".loop")]) == 10
