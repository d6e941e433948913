"""A real pre-fork web server (gunicorn, two sync workers, a Flask app) under
``opentelemetry-instrument --scope-mode hybrid``: the workers' spans land in the master's
session, the calls call sampling left out in the workers are counted where the user sees them,
and SIGTERM to the master ends everything in time."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from otel_scope import semconv
from otel_scope.store import SpanStore
from otel_scope.store.records import as_count
from scope_run import APPS, BIN, SESSION_LINE, base_env

pytest.importorskip("gunicorn")
REQUESTS = 40


def _serve(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path, int]:
    cmd = [
        str(BIN / "opentelemetry-instrument"),
        *("--scope-mode", "hybrid", "--scope-locals", "prefork_app:price"),
        *("--scope-targets", "prefork_app:*,prefork_app:nosuch"),
        str(BIN / "gunicorn"),
        *("-w", "2", "-b", "127.0.0.1:0", "prefork_app:app"),
    ]
    # Call sampling on (the default for users), with no kept calls past each function's first.
    env = base_env(tmp_path, {"OTEL_SCOPE_CALL_SAMPLING": "true", "OTEL_SCOPE_CALL_SAMPLE_RATE": "0"})
    log = tmp_path / "stderr.txt"
    with log.open("wb") as err:
        server = subprocess.Popen(
            cmd, cwd=APPS, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", log.read_text())
        if found and log.read_text().count("Booting worker") >= 2:
            return server, log, int(found.group(1))
        time.sleep(0.1)
    os.killpg(server.pid, signal.SIGKILL)
    pytest.fail(f"gunicorn did not start:\n{log.read_text()}")


def test_a_prefork_servers_workers_join_its_session_count_every_call_left_out_and_report_their_matches(
    tmp_path: Path,
) -> None:
    server, log, port = _serve(tmp_path)
    try:
        for n in range(REQUESTS):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/order/{n}", timeout=10) as response:
                assert response.read() == f"price {sum(i * 3 for i in range(n))}".encode()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=20) == 0, log.read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
    stderr = log.read_text()
    # The master never imports the app, its workers do: only the pattern no process matched is said.
    unmatched = [line for line in stderr.splitlines() if "selected nothing" in line]
    assert unmatched == [
        "otel-scope: prefork_app:nosuch selected nothing: module prefork_app was never imported here, "
        "and selected nothing in the 2 processes forked from here"
    ], stderr
    (closing,) = [line for line in stderr.splitlines() if line.startswith(SESSION_LINE)]
    store = SpanStore(tmp_path / "store.sqlite3", read_only=True)
    trace = store.get_trace(closing[len(SESSION_LINE) :].split()[0])
    store.close()
    assert trace is not None, stderr
    named = {name: [s for s in trace.spans if s.name == name] for name in {s.name for s in trace.spans}}
    (root,) = named[semconv.SESSION_SPAN_NAME]
    assert len(named["prefork_app.price"]) == REQUESTS  # named exactly: every call
    orders = named["prefork_app.order"]
    assert 2 <= len(orders) < REQUESTS  # the wildcard's calls were sampled, in both workers
    workers = named[semconv.PROCESS_SPAN_NAME]
    assert sorted(w.attributes["process.parent_pid"] for w in workers) == [server.pid] * 2
    assert all(w.parent_span_id == root.span_id for w in workers)
    # Every call left out is counted: on the workers' own spans, since the master ran none.
    left_out = sum(as_count(w.attributes.get(semconv.SAMPLING_SAMPLED_OUT)) for w in workers)
    assert left_out == REQUESTS - len(orders)
    assert not root.attributes.get(semconv.SAMPLING_SAMPLED_OUT)
    shown = subprocess.run(
        [str(BIN / "otel-scope"), "history", "--no-pager", trace.trace_id],
        env=base_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert f"call sampling left out {left_out} of {REQUESTS} calls" in shown, shown
    assert shown.count("END PROCESS pid") == 2, shown
