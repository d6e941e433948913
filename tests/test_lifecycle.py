"""Process lifecycle on real programs: never hang at exit, never lose spans without a count.

Each test runs ``tests/apps/app_lifecycle.py`` under ``opentelemetry-instrument`` in a real
subprocess with the real local store, and reads the SQLite file back. Every run has a deadline
(``subprocess.run(timeout=...)``): a hang fails the test instead of stalling the suite. Shapes
that hung only sometimes run several times in one test.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from otel_scope import semconv
from otel_scope.store import SpanStore
from otel_scope.timeline.model import SpanRecord, TraceData
from scope_run import SESSION_LINE, Run, run_instrumented

FLAGS = ["--scope-mode", "runtime", "--scope-targets", "lifework:*"]
DEADLINE_S = 40  # per run; a healthy one takes a few seconds on a loaded 2-core machine


def run_case(tmp_path: Path, case: str, size: int = 0, env: dict[str, str] | None = None) -> Run:
    return run_instrumented(
        "app_lifecycle.py", FLAGS, env or {}, tmp_path, argv=[case, str(size)], timeout=DEADLINE_S
    )


def stored_session(tmp_path: Path, run: Run) -> TraceData:
    """The run's trace from its local store, checked to hold exactly one session root."""
    assert run.returncode == 0, run.stderr
    closing = [line for line in run.stderr.splitlines() if line.startswith(SESSION_LINE)]
    assert len(closing) == 1, run.stderr  # the parent's line, once; no child prints it
    store = SpanStore(tmp_path / "store.sqlite3")
    try:
        trace = store.get_trace(run.session_trace_id or "")
    finally:
        store.close()
    assert trace is not None, run.stderr
    roots = [s for s in trace.spans if s.name == semconv.SESSION_SPAN_NAME]
    assert len(roots) == 1 and roots[0].parent_span_id is None, roots
    return trace


def root_of(trace: TraceData) -> SpanRecord:
    return next(s for s in trace.spans if s.name == semconv.SESSION_SPAN_NAME)


def named(trace: TraceData, name: str) -> list[SpanRecord]:
    return [s for s in trace.spans if s.name == name]


def test_fork_pool_with_a_traced_job_exits_and_keeps_every_span(tmp_path: Path) -> None:
    # Hung in about 4 runs of 6: a worker's SIGTERM handler waited on a store lock it had
    # inherited locked across fork. Three runs make the old defect near certain to show.
    for attempt in range(3):
        run = run_case(tmp_path / str(attempt), "forkpool", 50)
        trace = stored_session(tmp_path / str(attempt), run)
        root = root_of(trace)
        assert len(named(trace, "lifework.job")) == 50
        assert all(s.parent_span_id for s in named(trace, "lifework.job"))
        assert all(s.end_ns <= root.end_ns for s in trace.spans)


@pytest.mark.parametrize("leave", ["forkthread", "osexit"])
def test_forked_children_join_the_parents_trace_and_the_parent_ends_it_once(
    tmp_path: Path, leave: str
) -> None:
    # Five os.fork() children of a parent whose background thread keeps tracing; they leave with
    # sys.exit (once: 27 hangs in 30, the closing line three times, the parent's root dropped as
    # a duplicate) or os._exit (once: every child span lost).
    run = run_case(tmp_path, leave, 5)
    assert "children [0, 0, 0, 0, 0]" in run.stdout, run.stderr
    trace = stored_session(tmp_path, run)
    root = root_of(trace)
    jobs = named(trace, "lifework.job")
    assert len(jobs) == 6  # one per child, and the parent's own after the children exited
    last = max(jobs, key=lambda s: s.start_ns)
    assert root.start_ns <= last.start_ns and last.end_ns <= root.end_ns  # the parent's root ends last
    assert root.attributes[semconv.SESSION_EXIT] == "normal"


def test_daemon_threads_tracing_in_a_loop_do_not_stop_exit_and_the_root_is_stored(tmp_path: Path) -> None:
    # Four daemon threads call a traced function in a loop; main returns after 1.5 s. This never
    # exited (force_flush exported while the threads refilled the queue) and stored no root.
    started = time.monotonic()
    run = run_case(tmp_path, "daemon")
    elapsed = time.monotonic() - started
    assert "main done" in run.stdout
    trace = stored_session(tmp_path, run)
    assert named(trace, "lifework.leaf")
    # Startup, 1.5 s of work and the 2 s exit budget, with room for a loaded machine.
    assert elapsed < 15, elapsed
    (loss,) = [line for line in run.stderr.splitlines() if "not exported" in line]
    assert "ended after the session" in loss and str(tmp_path / "store.sqlite3") in loss


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_spawned_pool_workers_export_before_pool_terminate_kills_them(tmp_path: Path, method: str) -> None:
    # Pool.__exit__ terminates its workers with SIGTERM: 10 of 510 spans used to be stored.
    run = run_case(tmp_path, f"{method}pool", 50)
    trace = stored_session(tmp_path, run)
    assert len(named(trace, "lifework.job")) == 50
    assert len(named(trace, "lifework.leaf")) == 50
