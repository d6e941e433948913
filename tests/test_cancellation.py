"""A call asyncio cancels is control flow, not a failure, in both mechanisms alike.

``task.cancel()`` and a deadline (``asyncio.timeout``, ``asyncio.wait_for``) stop a coroutine by
raising ``CancelledError`` in it. Its span said ERROR, with an ``exception`` event, while
escalation already took cancellation for control flow; a run cancelling a few waits showed as a
run with errors. Now such a span has ``otel_scope.cancelled = true`` and no error, as
opentelemetry-instrumentation-asyncio records a cancelled coroutine; the ``TimeoutError`` a
missed deadline raises in its caller is an error there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_scope.store.records import SpanRecord
from otel_scope.view import ViewData
from scope_run import run_instrumented, run_plain, stored_trace

CANCELLED_CALLS = {"waits_forever": 3, "past_its_deadline": 2, "ticks": 1, "counts_ticks": 1}


@pytest.mark.parametrize(
    "flags",
    [
        ["--scope-mode", "runtime", "--scope-targets", "cancelwork:*"],
        ["--scope-mode", "compile_time", "--scope-locals", "cancelwork:*"],
        ["--scope-mode", "hybrid", "--scope-targets", "cancelwork:*", "--scope-locals", "cancelwork:*"],
    ],
    ids=["runtime", "compile_time", "hybrid"],
)
def test_a_cancelled_call_is_marked_cancelled_not_failed(tmp_path: Path, flags: list[str]) -> None:
    plain = run_plain("app_cancel.py", tmp_path)
    env = {"OTEL_TRACES_EXPORTER": "otel_scope", "OTEL_SCOPE_CONTROL": "false"}
    traced = run_instrumented("app_cancel.py", flags, env, tmp_path)
    expected = "cancelled timed out\ndeadline missed\nticks cancelled True\n"
    assert (traced.returncode, traced.stdout) == (plain.returncode, plain.stdout) == (0, expected)
    trace = stored_trace(tmp_path, traced)
    calls: dict[str, list[SpanRecord]] = {}
    for span in trace.spans:
        if span.name.startswith("cancelwork."):
            calls.setdefault(span.name.removeprefix("cancelwork."), []).append(span)
    cancelled = {
        name: n
        for name, spans in calls.items()
        if (n := sum(s.attributes.get("otel_scope.cancelled") is True for s in spans))
    }
    assert cancelled == CANCELLED_CALLS
    for name in CANCELLED_CALLS:
        for span in calls[name]:
            assert span.status_code == "UNSET" and not [e for e in span.events if e.name == "exception"]
    assert calls["ticks"][0].attributes["otel_scope.generator.end"] == "cancelled"
    assert ViewData(trace).steps(calls["past_its_deadline"][0].span_id)[-1]["text"] == "cancelled"
    (missed,) = calls["deadline_missed"]  # the deadline fails the call that set it
    assert missed.status_code == "ERROR" and "TimeoutError" in missed.status_message
    assert "otel_scope.cancelled" not in missed.attributes
    failed = {name for name, spans in calls.items() if any(s.status_code == "ERROR" for s in spans)}
    assert failed == {"deadline_missed"}
