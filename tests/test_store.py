"""The local SQLite span store and its exporter, on real files and real processes."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

from otel_scope import semconv as sc
from otel_scope.store import PRUNE_EVERY, LocalStoreSpanExporter, SpanStore, StoreError, record_from_span
from test_timeline_sample import HANDLE, MESSAGE_ID, RECEIVE, record_session, sample_spans

DAY_NS = 86_400 * 10**9


class Clock:
    """A settable wall clock, so retention by age is tested without waiting days."""

    def __init__(self, now: int = 1_800_000_000 * 10**9) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def _store_with_session(tmp_path: Path, **kwargs: object) -> tuple[SpanStore, str]:
    store = SpanStore(tmp_path / "traces.sqlite3", **kwargs)  # type: ignore[arg-type]
    trace_id, spans = sample_spans()
    store.add(spans)
    return store, trace_id


def test_every_span_field_survives_the_store(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "traces.sqlite3")
    trace_id, spans = sample_spans()
    store.add(spans)
    trace = store.get_trace(trace_id)
    assert trace is not None and trace.trace_id == trace_id
    by_name = {s.name: s for s in trace.spans}
    handle = by_name[HANDLE]
    assert handle.attributes[sc.CAPTURES_DROPPED] == 2
    assert handle.parent_span_id == by_name[sc.SESSION_SPAN_NAME].span_id
    assert [e.name for e in handle.events][:3] == [
        sc.EVENT_MESSAGE_RECEIVED,
        sc.EVENT_LOCALS,
        sc.EVENT_LOCALS,
    ]
    assert handle.events[1].attributes[sc.VAR_PREFIX + "stock"] == "10"
    assert handle.events[1].attributes[sc.CODE_LINE_NUMBER] == 15
    assert handle.links[0].span_id == by_name[RECEIVE].span_id
    assert handle.links[0].attributes == {sc.MESSAGE_ID: MESSAGE_ID}
    assert handle.resource["service.name"] == "shop"
    assert by_name["GET /prices"].kind == "CLIENT"
    quote = by_name["shop.pricing.quote"]
    assert (quote.status_code, quote.status_message) == ("ERROR", "ValueError: no price for itemA")
    # Field for field, the store returns what the SDK produced.
    assert sorted(trace.spans, key=lambda s: s.span_id) == sorted(
        map(record_from_span, spans), key=lambda s: s.span_id
    )


def test_a_unique_hex_prefix_finds_the_trace(tmp_path: Path) -> None:
    store, trace_id = _store_with_session(tmp_path)
    found = store.get_trace(trace_id[:6].upper())
    assert found is not None and found.trace_id == trace_id


def test_an_ambiguous_prefix_is_an_error_naming_the_candidates(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "s.sqlite3")
    ids = []
    while len({i[:1] for i in ids}) == len(ids):  # record until two traces share a first digit
        trace_id, spans = sample_spans()
        store.add(spans)
        ids.append(trace_id)
    shared = next(i[:1] for i in ids if sum(j[:1] == i[:1] for j in ids) > 1)
    with pytest.raises(StoreError, match="matches several traces"):
        store.get_trace(shared)


def test_unknown_or_non_hex_ids_find_nothing(tmp_path: Path) -> None:
    store, trace_id = _store_with_session(tmp_path)
    assert store.get_trace("f" * 32 if trace_id[0] != "f" else "0" * 32) is None
    assert store.get_trace("%") is None
    assert store.get_trace("not-hex") is None


def test_last_trace_is_the_one_that_most_recently_received_spans(tmp_path: Path) -> None:
    clock = Clock()
    store = SpanStore(tmp_path / "s.sqlite3", clock=clock)
    first, spans_a = sample_spans()
    second, spans_b = sample_spans()
    store.add(spans_b)
    clock.now += 10**9
    store.add(spans_a)
    assert store.last_trace_id() == first
    clock.now += 10**9
    store.add(spans_b[:0])
    assert store.last_trace_id() == first
    assert SpanStore(tmp_path / "empty.sqlite3").last_trace_id() is None
    assert second != first


def test_sessions_summarise_each_trace_newest_first(tmp_path: Path) -> None:
    clock = Clock()
    store = SpanStore(tmp_path / "s.sqlite3", clock=clock)
    older, spans = sample_spans(session_name="older")
    store.add(spans)
    clock.now += 10**9
    newer, spans = sample_spans(session_name="newer")
    store.add(spans)
    sessions = store.sessions()
    assert [s.trace_id for s in sessions] == [newer, older]
    top = sessions[0]
    assert top.session_name == "newer"
    assert top.root_name == sc.SESSION_SPAN_NAME
    assert top.service_name == "shop"
    assert (top.span_count, top.error_count) == (6, 1)
    assert top.duration_ns == 5_000_000
    assert top.has_runtime and top.has_compile_time
    assert [s.trace_id for s in store.sessions(limit=1)] == [newer]


def test_a_trace_without_a_local_root_is_named_after_its_earliest_span(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "s.sqlite3")
    _, spans = sample_spans()
    store.add([s for s in spans if s.name != sc.SESSION_SPAN_NAME])
    (summary,) = store.sessions()
    assert summary.root_name == RECEIVE
    assert summary.session_name == "checkout"


def test_spans_exported_twice_are_stored_and_counted_once(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "s.sqlite3")
    _, spans = sample_spans()
    assert store.add(spans) == 6
    assert store.add(spans) == 0
    assert store.sessions()[0].span_count == 6


def test_the_store_runs_in_wal_mode_with_incremental_vacuum(tmp_path: Path) -> None:
    _store_with_session(tmp_path)
    conn = sqlite3.connect(tmp_path / "traces.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "spans_trace_start" in indexes


def test_a_store_written_by_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    SpanStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="newer otel-scope"):
        SpanStore(path)


# -- retention --------------------------------------------------------------------------------------
def test_prune_by_age_drops_only_traces_idle_longer_than_the_limit(tmp_path: Path) -> None:
    clock = Clock()
    store = SpanStore(tmp_path / "s.sqlite3", clock=clock)
    old, spans = sample_spans()
    store.add(spans)
    clock.now += 3 * DAY_NS
    recent, spans = sample_spans()
    store.add(spans)
    clock.now += 1 * DAY_NS
    assert store.prune(max_age_days=2, max_mb=0) == 1
    assert store.get_trace(old) is None
    assert store.get_trace(recent) is not None
    assert [s.trace_id for s in store.sessions()] == [recent]


def test_prune_by_size_drops_least_recently_active_traces_first(tmp_path: Path) -> None:
    clock = Clock()
    store = SpanStore(tmp_path / "s.sqlite3", clock=clock)
    ids = []
    for _ in range(40):
        trace_id, spans = sample_spans()
        store.add(spans)
        ids.append(trace_id)
        clock.now += 10**9
    before = store.size_bytes()
    limit_mb = before / 2 / 1024 / 1024
    removed = store.prune(max_age_days=0, max_mb=limit_mb)
    assert 0 < removed < 40
    assert store.size_bytes() <= limit_mb * 1024 * 1024
    kept = [s.trace_id for s in store.sessions(limit=100)]
    assert kept == list(reversed(ids))[: len(kept)]  # the newest survive, in order
    assert (tmp_path / "s.sqlite3").stat().st_size > 0


def test_prune_never_drops_the_most_recent_trace_for_size(tmp_path: Path) -> None:
    store, trace_id = _store_with_session(tmp_path)
    store.prune(max_age_days=0, max_mb=0.000001)
    assert store.get_trace(trace_id) is not None


def test_zero_limits_turn_retention_off(tmp_path: Path) -> None:
    clock = Clock()
    store = SpanStore(tmp_path / "s.sqlite3", clock=clock)
    _, spans = sample_spans()
    store.add(spans)
    clock.now += 365 * DAY_NS
    assert store.prune(max_age_days=0, max_mb=0) == 0


# -- several processes ------------------------------------------------------------------------------
WRITER = textwrap.dedent(
    """
    import os, sys, time
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from otel_scope.store import LocalStoreSpanExporter

    path, writer, traces, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    provider = TracerProvider(resource=Resource.create({"service.name": "writer-" + writer}))
    exporter = LocalStoreSpanExporter(path=path)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    print("ready", flush=True)
    while not os.path.exists(go):  # start together, so the writes (and the store's creation) overlap
        time.sleep(0.001)
    for number in range(traces):
        with tracer.start_as_current_span("root", attributes={"otel_scope.session.name": writer}):
            for child in range(4):
                tracer.start_span(f"child-{child}", attributes={"otel_scope.mechanism": "runtime"}).end()
    provider.shutdown()
    print("done")
    """
)


def test_several_processes_writing_at_once_lose_no_spans(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "traces.sqlite3"  # created by whichever process comes first
    go = tmp_path / "go"
    writers, traces = 6, 60
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(w), str(traces), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(writers)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    go.touch()
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.strip() == "done" and "otel-scope" not in err, err
    store = SpanStore(path)
    sessions = store.sessions(limit=1000)
    assert len(sessions) == writers * traces
    assert all(s.span_count == 5 and s.root_name == "root" for s in sessions)
    assert {s.session_name for s in sessions} == {str(w) for w in range(writers)}
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM spans").fetchone()[0] == writers * traces * 5
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_fork_while_another_thread_writes_leaves_both_processes_writes_intact(tmp_path: Path) -> None:
    # The program forks while the exporter thread is inside a write transaction (its pages spilled
    # into the WAL); the child writes its own spans and leaves. The child used to close the
    # connection it inherited, rolling that transaction back in the WAL index both processes
    # share: the thread's commit failed with "database disk image is malformed", or the child's
    # write was lost (a forked job's span missing in CI). Now the fork waits for the commit.
    store = SpanStore(tmp_path / "traces.sqlite3")
    _trace_id, spans = sample_spans()
    row = "INSERT INTO traces VALUES (?, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0, 0, 0)"
    inside, failed = threading.Event(), []

    def writer() -> None:  # as the exporter's worker thread writes a batch
        try:
            with store._write() as conn:
                conn.execute("PRAGMA cache_size = 10")  # spill the transaction's pages
                conn.executemany(row, [(f"{i:032x}",) for i in range(3000)])
                inside.set()
                time.sleep(0.3)  # the fork lands here, inside the transaction
                conn.executemany(row, [(f"{i:032x}",) for i in range(3000, 4000)])
        except Exception as exc:
            failed.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    assert inside.wait(30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads running
        pid = os.fork()
    if pid == 0:  # the child: its own spans on its own connection, then away without atexit
        code = 1
        try:
            store.add(spans)
            store.close()
            code = 0
        finally:
            os._exit(code)
    thread.join(30)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert not failed
    check = sqlite3.connect(store.path)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert check.execute("SELECT count(*) FROM spans").fetchone()[0] == len(spans)  # the child's
    assert check.execute("SELECT count(*) FROM traces").fetchone()[0] == 4000 + 1


# -- the exporter -----------------------------------------------------------------------------------
@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in (
        "OTEL_SCOPE_STORE_PATH",
        "OTEL_SCOPE_STORE_MAX_AGE_DAYS",
        "OTEL_SCOPE_STORE_MAX_MB",
        "OTEL_SCOPE_MODE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OTEL_SCOPE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no pyproject.toml here
    return monkeypatch


def test_exporter_built_without_arguments_writes_to_the_configured_store(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "deep" / "dir" / "t.sqlite3"
    clean_env.setenv("OTEL_SCOPE_STORE_PATH", str(path))
    exporter = LocalStoreSpanExporter()
    assert not path.exists()  # nothing on disk until something is exported
    trace_id = record_session(exporter)
    assert SpanStore(path).get_trace(trace_id) is not None


def test_exporter_reads_retention_from_the_settings(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OTEL_SCOPE_STORE_MAX_AGE_DAYS", "3")
    clean_env.setenv("OTEL_SCOPE_STORE_MAX_MB", "50")
    exporter = LocalStoreSpanExporter()
    assert (exporter.max_age_days, exporter.max_mb) == (3.0, 50.0)


def test_exporter_falls_back_to_defaults_when_the_configuration_is_invalid(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("OTEL_SCOPE_MODE", "bogus")
    clean_env.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    trace_id = record_session(LocalStoreSpanExporter())
    assert SpanStore(tmp_path / "state" / "otel-scope" / "traces.sqlite3").get_trace(trace_id) is not None


def test_the_sdk_entry_point_builds_the_exporter(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("OTEL_SCOPE_STORE_PATH", str(tmp_path / "ep.sqlite3"))
    (entry,) = entry_points(group="opentelemetry_traces_exporter", name="otel_scope")
    exporter = entry.load()()
    assert isinstance(exporter, LocalStoreSpanExporter)
    assert exporter.path == str(tmp_path / "ep.sqlite3")


def test_batch_processor_spans_reach_the_store_on_shutdown(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(LocalStoreSpanExporter(path=path)))
    with provider.get_tracer("t").start_as_current_span("work") as span:
        trace_id = f"{span.get_span_context().trace_id:032x}"
    provider.shutdown()
    assert SpanStore(path).sessions()[0].trace_id == trace_id


def test_export_failure_returns_failure_and_warns_only_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store's directory should be")
    exporter = LocalStoreSpanExporter(path=blocker / "t.sqlite3")
    _, spans = sample_spans()
    with caplog.at_level(logging.DEBUG, logger="otel_scope.store.exporter"):
        assert exporter.export(spans) is SpanExportResult.FAILURE
        assert exporter.export(spans) is SpanExportResult.FAILURE
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(blocker) in warnings[0].getMessage()
    assert any(r.levelno == logging.DEBUG for r in caplog.records)


def test_exporter_prunes_on_its_first_export_and_then_periodically(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite3"
    clock = Clock(now=1_000_000 * 10**9)  # long ago: every trace stored with it is past retention
    old_store = SpanStore(path, clock=clock)
    old, spans = sample_spans()
    old_store.add(spans)
    old_store.close()
    exporter = LocalStoreSpanExporter(path=path, max_age_days=1, max_mb=100)
    new = record_session(exporter)
    store = SpanStore(path)
    assert store.get_trace(old) is None and store.get_trace(new) is not None
    assert PRUNE_EVERY > 1


def test_exporter_after_shutdown_refuses_exports(tmp_path: Path) -> None:
    exporter = LocalStoreSpanExporter(path=tmp_path / "s.sqlite3")
    exporter.shutdown()
    _, spans = sample_spans()
    assert exporter.export(spans) is SpanExportResult.FAILURE
    assert exporter.force_flush() is True


def test_sdk_spans_and_the_same_spans_as_records_give_the_same_rows_and_summary(tmp_path: Path) -> None:
    """The exporter's direct path (SDK span to row) and the import path (record to row) agree."""
    trace_id, spans = sample_spans()
    direct, imported = SpanStore(tmp_path / "direct.sqlite3"), SpanStore(tmp_path / "imported.sqlite3")
    assert direct.add(spans) == imported.add_records([record_from_span(s) for s in spans]) == len(spans)
    assert direct.sessions() == imported.sessions()
    assert direct.get_trace(trace_id) == imported.get_trace(trace_id)


def test_a_store_set_up_before_opens_without_running_its_schema_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every run that records a session opens the store at exit; setting auto_vacuum and running
    # the schema's statements again on a file that has them cost about 1 ms of that exit.
    path = tmp_path / "s.sqlite3"
    SpanStore(path).close()
    statements: list[str] = []
    connect = sqlite3.connect

    def traced_connect(*args: object, **kwargs: object) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)  # type: ignore[arg-type]
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(sqlite3, "connect", traced_connect)
    store = SpanStore(path)
    try:
        _, spans = sample_spans()
        store.add(spans)
    finally:
        store.close()
    setup = [s for s in statements if "CREATE" in s.upper() or "auto_vacuum" in s or "journal_mode" in s]
    assert setup == [] and statements, statements
