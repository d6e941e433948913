"""``otel-scope history`` as a subprocess: the local store, backends over HTTP, filters, JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_scope.timeline import LocalStoreSource, to_jaeger_json, to_otlp_json
from test_cli_support import ESC, run_cli, sample_store
from test_timeline_sample import EXPECTED_LINES, HANDLE, MESSAGE_ID
from test_timeline_sources import Backend

PREFIX = 23  # offset and mechanism tag before each timeline line


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, list[str]]:
    return sample_store(tmp_path)


@pytest.fixture
def backend() -> Iterator[Backend]:
    server = Backend()
    yield server
    server.close()


def _timeline(stdout: str) -> list[str]:
    return [line[PREFIX:] for line in stdout.splitlines() if line.lstrip().startswith("+")]


def test_history_shows_the_most_recent_session_as_plain_text_when_piped(
    tmp_path: Path, store: tuple[Path, list[str]]
) -> None:
    path, ids = store
    result = run_cli("history", cwd=tmp_path, store=path)
    assert result.returncode == 0, result.stderr
    assert ESC not in result.stdout
    assert result.stdout.startswith(f"Trace {ids[-1]}  session checkout")
    assert _timeline(result.stdout) == EXPECTED_LINES
    assert run_cli("history", "--last", cwd=tmp_path, store=path).stdout == result.stdout


def test_history_of_a_trace_named_by_a_prefix(tmp_path: Path, store: tuple[Path, list[str]]) -> None:
    path, ids = store
    result = run_cli("history", ids[0][:8], "--store", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Trace {ids[0]}  session first")


def test_history_function_filter(tmp_path: Path, store: tuple[Path, list[str]]) -> None:
    path, _ = store
    result = run_cli("history", "--function", "InventoryChecker.*", cwd=tmp_path, store=path)
    lines = _timeline(result.stdout)
    assert lines[0] == f"CALL {HANDLE}(item_id='itemA')" and lines[-1].startswith(f"RETURN {HANDLE}")
    assert "  LINE 15  VAR stock = 10, reserved = 3" in lines


def test_history_follow_a_message(tmp_path: Path, store: tuple[Path, list[str]]) -> None:
    path, _ = store
    result = run_cli("history", "--follow", MESSAGE_ID, cwd=tmp_path, store=path)
    assert result.returncode == 0, result.stderr
    lines = _timeline(result.stdout)
    assert lines[0].startswith(
        "MESSAGE #msg-1 via queue.Queue shop.orders.OrderReceiver.receive -> " + HANDLE
    )
    assert "    STATE stock: {'itemA': 10} -> {'itemA': 9}" in lines


def test_history_json_is_the_list_of_timeline_entries(tmp_path: Path, store: tuple[Path, list[str]]) -> None:
    path, ids = store
    result = run_cli("history", "--json", cwd=tmp_path, store=path)
    entries = json.loads(result.stdout)
    assert ["  " * e["depth"] + e["text"] for e in entries] == EXPECTED_LINES
    assert {e["trace_id"] for e in entries} == {ids[-1]}


def test_history_from_jaeger_over_http(
    tmp_path: Path, store: tuple[Path, list[str]], backend: Backend
) -> None:
    path, ids = store
    trace = LocalStoreSource(path).get_trace(ids[-1])
    backend.json(f"/api/v3/traces/{ids[-1]}", {"result": to_otlp_json(trace)})
    result = run_cli("history", ids[-1], "--from", "jaeger", backend.url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert _timeline(result.stdout) == EXPECTED_LINES


def test_history_last_from_jaeger_uses_its_search(
    tmp_path: Path, store: tuple[Path, list[str]], backend: Backend
) -> None:
    path, ids = store
    trace = LocalStoreSource(path).get_trace(ids[-1])
    backend.json("/api/services", {"data": ["shop"]})
    backend.json("/api/traces", to_jaeger_json(trace))
    backend.json(f"/api/traces/{ids[-1]}", to_jaeger_json(trace))
    result = run_cli("history", "--last", "--from", "jaeger", backend.url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert _timeline(result.stdout) == EXPECTED_LINES


def test_history_from_tempo_over_http(
    tmp_path: Path, store: tuple[Path, list[str]], backend: Backend
) -> None:
    path, ids = store
    trace = LocalStoreSource(path).get_trace(ids[0])
    backend.json(f"/api/v2/traces/{ids[0]}", {"trace": to_otlp_json(trace), "status": "COMPLETE"})
    result = run_cli("history", ids[0], "--from", "tempo", backend.url, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["text"] == "SESSION first (explicit)"
