"""A call still running when its process ends with ``os._exit`` is ended there, not lost.

OpenTelemetry exports only ended spans: a traced call that a process leaves with ``os._exit``
(a forked worker, a program skipping its teardown) had no span at all, its child calls' spans
were orphans, and in the main process nothing of the run was exported, with no line to say so.
Now its span ends at the exit with ``otel_scope.unfinished = "os._exit(N)"``, one line counts
such calls, and the main process ends its session (exit ``os._exit``) and exports first.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from otel_scope.store.records import SpanRecord, TraceData
from otel_scope.view import ViewData
from scope_run import Run, run_instrumented, run_plain, stored_trace

MODES = {
    "runtime": ["--scope-mode", "runtime", "--scope-targets", "leavework:*"],
    "compile_time": ["--scope-mode", "compile_time", "--scope-locals", "leavework:*"],
    "hybrid": ["--scope-mode", "hybrid", "--scope-targets", "leavework:*", "--scope-locals", "leavework:*"],
}
ENV = {"OTEL_TRACES_EXPORTER": "otel_scope", "OTEL_SCOPE_CONTROL": "false"}


def _run(tmp_path: Path, how: str, flags: list[str]) -> tuple[Run, Run, TraceData]:
    plain = run_plain("app_leave.py", tmp_path, argv=[how])
    traced = run_instrumented("app_leave.py", flags, ENV, tmp_path, argv=[how])
    assert (traced.returncode, traced.stdout) == (plain.returncode, plain.stdout), traced.stderr
    return plain, traced, stored_trace(tmp_path, traced)


def _named(trace: TraceData, name: str) -> SpanRecord:
    (span,) = [s for s in trace.spans if s.name == f"leavework.{name}"]
    return span


@pytest.mark.parametrize("mode", list(MODES))
def test_a_call_the_main_process_leaves_with_os_exit_ends_there_with_the_session(
    tmp_path: Path, mode: str
) -> None:
    plain, traced, trace = _run(tmp_path, "main", MODES[mode])
    assert (plain.returncode, plain.stdout) == (3, "leaving 1\n")
    leaves, child = _named(trace, "leaves"), _named(trace, "child")
    assert leaves.attributes["otel_scope.unfinished"] == "os._exit(3)"
    assert leaves.status_code == "UNSET" and child.parent_span_id == leaves.span_id
    if mode != "runtime":  # what compile-time capture recorded before the exit is kept
        locals_ = [e for e in leaves.events if e.name == "otel_scope.locals"]
        assert [e.attributes["otel_scope.var.done"] for e in locals_] == ["1"]
    root = next(s for s in trace.spans if s.parent_span_id is None)
    assert root.attributes["otel_scope.session.exit"] == "os._exit"
    assert ViewData(trace).steps(leaves.span_id)[-1]["text"] == "still running at os._exit(3)"
    assert traced.stderr_without_session_line == (
        "otel-scope: 1 traced call still running at os._exit(3): "
        "its span ends there (otel_scope.unfinished)\n"
    )


def test_a_call_a_forked_child_leaves_with_os_exit_ends_there_and_the_parent_goes_on(
    tmp_path: Path,
) -> None:
    plain, traced, trace = _run(tmp_path, "fork", MODES["runtime"])
    assert (plain.returncode, plain.stdout) == (0, "leaving 1\nchild exited 0\n")
    leaves = _named(trace, "leaves")
    assert leaves.attributes["otel_scope.unfinished"] == "os._exit(0)"
    assert _named(trace, "child").parent_span_id == leaves.span_id
    lines = traced.stderr_without_session_line.splitlines()
    assert len(lines) == 1 and lines[0].startswith("otel-scope: (pid ") and "at os._exit(0)" in lines[0]


@pytest.mark.parametrize("mode", list(MODES))
def test_coroutines_running_and_suspended_at_os_exit_end_there(tmp_path: Path, mode: str) -> None:
    """The coroutine that calls ``os._exit`` and one suspended in another task, both unfinished."""
    plain, traced, trace = _run(tmp_path, "asyncio", MODES[mode])
    assert (plain.returncode, plain.stdout) == (4, "leaving False\n")
    for name in ("leaves_from_a_coroutine", "waits"):
        assert _named(trace, name).attributes["otel_scope.unfinished"] == "os._exit(4)"
    assert "2 traced calls still running at os._exit(4)" in traced.stderr


def test_a_call_sigterm_ends_is_ended_there_and_the_process_dies_of_sigterm(tmp_path: Path) -> None:
    plain, traced, trace = _run(tmp_path, "sigterm", MODES["runtime"])
    assert plain.returncode == -signal.SIGTERM
    assert _named(trace, "killed").attributes["otel_scope.unfinished"] == "signal SIGTERM"
    assert "1 traced call still running at signal SIGTERM" in traced.stderr


def test_finding_the_unfinished_calls_runs_none_of_the_programs_code(tmp_path: Path) -> None:
    """A frame's locals are looked at by their own type: ``isinstance`` reads ``__class__``,
    which evaluates a lazy object (django's ``SimpleLazyObject``, a lazy settings object)."""
    plain, _, trace = _run(tmp_path, "lazy", MODES["runtime"])
    assert (plain.returncode, plain.stdout) == (5, "")
    assert _named(trace, "leaves_holding").attributes["otel_scope.unfinished"] == "os._exit(5)"
