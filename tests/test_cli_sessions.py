"""``otel-scope sessions`` as a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

from otel_scope.store import SpanStore
from test_cli_support import ESC, run_cli, sample_store


def test_sessions_lists_one_row_per_trace_most_recent_first(tmp_path: Path) -> None:
    path, ids = sample_store(tmp_path)
    result = run_cli("sessions", cwd=tmp_path, store=path)
    assert result.returncode == 0, result.stderr
    assert ESC not in result.stdout
    header, first, second, footer = result.stdout.splitlines()
    assert header.split() == [
        "TRACE",
        "ID",
        "STARTED",
        "DURATION",
        "SPANS",
        "ERRORS",
        "DEPTHS",
        "SESSION",
        "SERVICE",
        "ROOT",
    ]
    assert first.split()[0] == ids[1] and second.split()[0] == ids[0]
    assert first.split()[3:] == [
        "5.00",
        "ms",
        "6",
        "1",
        "runtime+compile_time",
        "checkout",
        "shop",
        "otel_scope.session",
    ]
    assert footer.startswith(str(path))


def test_sessions_json_and_limit(tmp_path: Path) -> None:
    path, ids = sample_store(tmp_path)
    result = run_cli("sessions", "--json", "--limit", "1", "--store", str(path), cwd=tmp_path)
    (row,) = json.loads(result.stdout)
    assert row["trace_id"] == ids[1] and row["session_name"] == "checkout"
    assert (row["span_count"], row["error_count"], row["has_runtime"], row["has_compile_time"]) == (
        6,
        1,
        True,
        True,
    )


def test_sessions_of_an_empty_store_says_so(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite3"
    SpanStore(path).close()
    result = run_cli("sessions", cwd=tmp_path, store=path)
    assert result.returncode == 0 and result.stdout.strip() == f"no sessions in {path} yet"
    assert json.loads(run_cli("sessions", "--json", cwd=tmp_path, store=path).stdout) == []
