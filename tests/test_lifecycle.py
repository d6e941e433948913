"""Process lifecycle on real programs: never hang at exit, never lose spans without a count.

Each test runs ``tests/apps/app_lifecycle.py`` under ``opentelemetry-instrument`` in a real
subprocess with the real local store, and reads the SQLite file back. Every run has a deadline
(``subprocess.run(timeout=...)``): a hang fails the test instead of stalling the suite. Shapes
that hung only sometimes run several times in one test.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from otel_scope import pipeline, semconv
from otel_scope.store import SpanStore
from otel_scope.store.records import SpanRecord, TraceData
from otlp_receiver import OtlpReceiver
from scope_run import BIN, SESSION_LINE, Run, base_env, run_instrumented, stored_trace

FLAGS = ["--scope-mode", "runtime", "--scope-targets", "lifework:*"]
DEADLINE_S = 40  # per run; a healthy one takes a few seconds on a loaded 2-core machine
# From the program's last line to the process gone: the 2 s exit budget, interpreter teardown,
# and slack for a loaded 2-core machine (measured unloaded: 2.3-2.5 s with a dead collector).
EXIT_WAIT_S = 5.0


def run_case(tmp_path: Path, case: str, size: int = 0, env: dict[str, str] | None = None) -> Run:
    return run_instrumented(
        "app_lifecycle.py", FLAGS, env or {}, tmp_path, argv=[case, str(size)], timeout=DEADLINE_S
    )


def stored_session(tmp_path: Path, run: Run) -> TraceData:
    """The run's trace from its local store, checked to hold exactly one session root."""
    assert run.returncode == 0, run.stderr
    closing = [line for line in run.stderr.splitlines() if line.startswith(SESSION_LINE)]
    assert len(closing) == 1, run.stderr  # the parent's line, once; no child prints it
    trace = stored_trace(tmp_path, run)
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


@pytest.mark.parametrize("leave", ["forkthread", "osexit", "forkexec"])
def test_forked_children_join_the_parents_trace_and_the_parent_ends_it_once(
    tmp_path: Path, leave: str
) -> None:
    # Five os.fork() children of a parent whose background thread keeps tracing; they leave with
    # sys.exit (once: 27 hangs in 30, the closing line three times, the parent's root dropped as
    # a duplicate), os._exit (once: every child span lost) or os.execve (every child span lost).
    run = run_case(tmp_path, leave, 5)
    assert "children [0, 0, 0, 0, 0]" in run.stdout, run.stderr
    trace = stored_session(tmp_path, run)
    root = root_of(trace)
    jobs = named(trace, "lifework.job")
    assert len(jobs) == 6, run.stderr  # one per child, and the parent's own after the children exited
    last = max(jobs, key=lambda s: s.start_ns)
    assert root.start_ns <= last.start_ns and last.end_ns <= root.end_ns  # the parent's root ends last
    assert root.attributes[semconv.SESSION_EXIT] == "normal"


def test_a_program_that_replaces_itself_with_exec_ends_its_session_first(tmp_path: Path) -> None:
    # os.execve runs no atexit handler: the root span and the traced call died in the queue.
    run = run_case(tmp_path, "exec")
    assert run.stdout.strip().splitlines()[-1] == "replaced"
    trace = stored_session(tmp_path, run)
    assert len(named(trace, "lifework.job")) == 1
    assert root_of(trace).attributes[semconv.SESSION_EXIT] == "exec"


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


def test_pool_workers_die_of_sigterm_at_once_while_the_parent_ends_its_session_on_it(tmp_path: Path) -> None:
    # A Python-level handler in a worker never ran when SIGTERM landed just before the worker
    # blocked on the pool's semaphore, so Pool.terminate() waited for it forever.
    run = run_case(tmp_path, "sigterm", 4)
    assert "parent default False workers default {True}" in run.stdout, run.stderr


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_spawned_pool_workers_export_before_pool_terminate_kills_them(tmp_path: Path, method: str) -> None:
    # Pool.__exit__ terminates its workers with SIGTERM: 10 of 510 spans used to be stored, and
    # a worker that got SIGTERM just before waiting on a semaphore kept the exit waiting forever.
    run = run_case(tmp_path, f"{method}pool", 50)
    trace = stored_session(tmp_path, run)
    assert len(named(trace, "lifework.job")) == 50
    assert len(named(trace, "lifework.leaf")) == 50


def done_at(run: Run) -> float:
    """When the program finished its own work (its last line), as ``time.time()``."""
    return float(run.stdout.split("done at ", 1)[1].split()[0])


def lost_on_stderr(run: Run) -> int:
    """The count in otel-scope's one loss line at exit (0 without one)."""
    lines = [line for line in run.stderr.splitlines() if "span(s) not exported" in line]
    assert len(lines) <= 1, run.stderr
    if not lines:
        return 0
    return int(lines[0].split("otel-scope: ", 1)[1].split(" ", 1)[0].replace(",", ""))


def test_every_span_of_a_hot_loop_is_stored_or_counted_on_the_root_stderr_and_history(tmp_path: Path) -> None:
    # A queue far too small for 20,000 calls: spans are lost, and every one is accounted for.
    run = run_case(tmp_path, "hot", 20000, env={"OTEL_BSP_MAX_QUEUE_SIZE": "200"})
    trace = stored_session(tmp_path, run)
    root = root_of(trace)
    made = 20000 + 2  # the leaves, parent() and the session root
    lost = lost_on_stderr(run)
    assert lost > 0 and len(trace.spans) + lost == made, (len(trace.spans), lost)
    on_root = root.attributes[semconv.SESSION_DROPPED_SPANS]
    assert 0 < on_root <= lost  # what was lost before the root ended
    (reason,) = root.attributes[semconv.SESSION_DROPPED_REASONS]
    assert (
        reason.startswith(f"the local store {tmp_path / 'store.sqlite3'}: ") and "export queue full" in reason
    )
    history = subprocess.run(
        [str(BIN / "otel-scope"), "history", trace.trace_id],
        env=base_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )
    assert f"dropped {on_root:,} spans (" in history.stdout, history.stdout


def test_twenty_thousand_calls_into_the_store_are_all_stored_or_counted_at_the_default_sizes(
    tmp_path: Path,
) -> None:
    # hot.parent(20000) used to keep 9,081 of 20,000 calls with the local store alone, silently.
    # Unloaded, all 20,000 are stored; on a loaded machine the backlog left at exit may not fit
    # in the 2 s exit budget, and then every span not stored is counted (never lost silently).
    run = run_case(tmp_path, "hot", 20000)
    trace = stored_session(tmp_path, run)
    assert len(trace.spans) + lost_on_stderr(run) == 20000 + 2, run.stderr
    assert semconv.SESSION_DROPPED_SPANS not in root_of(trace).attributes  # no queue loss


def test_targeting_the_libraries_the_exporter_uses_does_not_feed_back(tmp_path: Path) -> None:
    # --scope-targets json:dumps once traced the store's own json.dumps calls: the program never
    # exited and the store grew to 16 GB. Now nothing otel-scope or the SDK runs is traced.
    targets = "lifework:*,json:*,sqlite3:*,threading:*,queue:*,logging:*,os:*"
    run = run_instrumented(
        "app_lifecycle.py",
        ["--scope-mode", "runtime", "--scope-targets", targets],
        {},
        tmp_path,
        argv=["stdlib", "20"],
        timeout=DEADLINE_S,
    )
    assert "(True, 20)" in run.stdout, run.stderr
    trace = stored_session(tmp_path, run)
    assert len(named(trace, "json.dumps")) == 21  # the program's own: 20 rows and one in a thread
    assert len(named(trace, "lifework.stdlib_round_trip")) == 1
    assert lost_on_stderr(run) == 0, run.stderr


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_exit_with_the_collector_down_waits_at_most_the_exit_budget_and_keeps_a_local_copy(
    tmp_path: Path, protocol: str
) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_EXPORTER_OTLP_PROTOCOL": protocol}
    run = run_case(tmp_path, "hot", 2000, env=env)
    exited = time.time()
    trace = stored_session(tmp_path, run)
    assert len(named(trace, "lifework.leaf")) == 2000  # the local store has everything
    (loss,) = [line for line in run.stderr.splitlines() if "span(s) not exported" in line]
    assert "OTLP " in loss and "127.0.0.1:9" in loss and "a complete local copy is in the local store" in loss
    assert exited - done_at(run) < EXIT_WAIT_S, exited - done_at(run)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_exit_with_a_slow_collector_waits_at_most_the_exit_budget(tmp_path: Path, protocol: str) -> None:
    # A collector taking 3 s per export used to hold exit for 10 s.
    with OtlpReceiver(response_delay_s=3.0) as slow:
        env = {**slow.env(protocol), "OTEL_TRACES_EXPORTER": "otlp,otel_scope"}
        run = run_case(tmp_path, "hot", 2000, env=env)
        exited = time.time()
    trace = stored_session(tmp_path, run)
    assert len(named(trace, "lifework.leaf")) == 2000
    assert exited - done_at(run) < EXIT_WAIT_S, exited - done_at(run)
    (loss,) = [line for line in run.stderr.splitlines() if "span(s) not exported" in line]
    assert "OTLP " in loss and "a complete local copy is in the local store" in loss


def test_a_store_locked_by_another_process_costs_exit_at_most_the_budget(tmp_path: Path) -> None:
    # Another process holding the store's write lock cost 15 s per batch (65 s for 2,000 calls).
    store = SpanStore(tmp_path / "store.sqlite3")
    holder = sqlite3.connect(tmp_path / "store.sqlite3", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        run = run_case(tmp_path, "hot", 2000)
        exited = time.time()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        store.close()
    assert run.returncode == 0, run.stderr
    assert exited - done_at(run) < EXIT_WAIT_S, exited - done_at(run)
    (loss,) = [line for line in run.stderr.splitlines() if "span(s) not exported" in line]
    assert str(tmp_path / "store.sqlite3") in loss and "the trace is incomplete" in loss
    assert lost_on_stderr(run) == 2000 + 2  # nothing could be written, and all of it is counted


def test_the_store_size_limit_holds_for_the_trace_being_written(tmp_path: Path) -> None:
    # One run left a 2.41 GB store under a 200 MB limit: pruning never touches the active trace.
    run = run_case(tmp_path, "hot", 20000, env={"OTEL_SCOPE_STORE_MAX_MB": "1"})
    trace = stored_session(tmp_path, run)
    store = SpanStore(tmp_path / "store.sqlite3")
    try:
        size = store.size_bytes()
    finally:
        store.close()
    # Stored: what fits in 1 MB, plus the one batch that crossed the limit, no more.
    fit = 1024 * 1024 / (size / len(trace.spans))
    assert len(trace.spans) <= fit + pipeline._STORE_DEFAULTS[1], (size, len(trace.spans), fit)
    assert len(trace.spans) < 20000 / 2
    lost = lost_on_stderr(run)
    assert len(trace.spans) + lost == 20000 + 2, (len(trace.spans), lost)
    assert "store size limit (1 MB) reached" in run.stderr


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_pool_workers_export_their_spans_without_a_process_session(tmp_path: Path, method: str) -> None:
    # With --scope-session request there is no root of ours, and no session to end the workers'
    # export: they still export on Pool.terminate's SIGTERM (and fork workers at os._exit).
    run = run_instrumented(
        "app_lifecycle.py",
        [*FLAGS, "--scope-session", "request"],
        {},
        tmp_path,
        argv=[f"{method}pool", "50"],
        timeout=DEADLINE_S,
    )
    assert run.returncode == 0 and run.session_trace_id is None, run.stderr
    store = SpanStore(tmp_path / "store.sqlite3")
    try:
        jobs = [
            s
            for t in store.sessions(200)
            for s in store.get_trace(t.trace_id).spans
            if s.name == "lifework.job"
        ]
    finally:
        store.close()
    assert len(jobs) == 50
