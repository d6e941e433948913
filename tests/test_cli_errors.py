"""Every user-fixable failure of ``otel-scope`` is one line on stderr and exit code 1."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from otel_scope.store import SpanStore
from test_cli_support import run_cli, sample_store
from test_timeline_sources import Backend


def _assert_one_line_error(result, *needles: str) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("otel-scope: "), result.stderr
    for needle in needles:
        assert needle in lines[0]


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("command", [["history"], ["history", "abc123"], ["sessions"], ["export", "abc123"]])
def test_no_store_yet_says_how_to_make_one(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "never" / "traces.sqlite3"
    result = run_cli(*command, cwd=tmp_path, store=path)
    _assert_one_line_error(result, f"no traces stored yet at {path}", "opentelemetry-instrument")
    assert not path.exists()  # reading never creates a store


def test_an_empty_store_has_no_last_trace(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite3"
    SpanStore(path).close()
    _assert_one_line_error(
        run_cli("history", "--last", cwd=tmp_path, store=path), f"no traces stored yet at {path}"
    )


@pytest.mark.parametrize("command", ["history", "export"])
def test_an_unknown_trace_id_names_the_id_and_the_store(tmp_path: Path, command: str) -> None:
    path, ids = sample_store(tmp_path)
    unknown = "0" * 32 if not any(i.startswith("0") for i in ids) else "f" * 32
    _assert_one_line_error(
        run_cli(command, unknown, cwd=tmp_path, store=path), unknown, str(path), "otel-scope sessions"
    )


def test_an_unknown_follow_id_is_an_error(tmp_path: Path) -> None:
    path, _ = sample_store(tmp_path)
    _assert_one_line_error(
        run_cli("history", "--follow", "nope", cwd=tmp_path, store=path), "no message or span 'nope'"
    )


def test_an_unreachable_backend_names_the_url(tmp_path: Path) -> None:
    url = _closed_port_url()
    _assert_one_line_error(
        run_cli("history", "a" * 32, "--from", "jaeger", url, cwd=tmp_path), "cannot reach Jaeger", url
    )
    _assert_one_line_error(
        run_cli("history", "--last", "--from", "tempo", url, cwd=tmp_path), "cannot reach Tempo", url
    )


def test_a_backend_without_recent_traces_asks_for_an_id(tmp_path: Path) -> None:
    server = Backend()
    try:
        server.json("/api/search", {"traces": [], "metrics": {}})
        result = run_cli("history", "--from", "tempo", server.url, cwd=tmp_path)
    finally:
        server.close()
    _assert_one_line_error(result, f"no recent traces at {server.url}; give a TRACE_ID")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--from", "zipkin"], "--from takes 'jaeger [URL]' or 'tempo [URL]'"),
        (["--from", "jaeger", "localhost:16686"], "needs an http:// or https:// URL"),
        (["abc", "--last"], "give TRACE_ID or --last, not both"),
        (["not-hex!"], "is not a trace ID"),
    ],
)
def test_bad_history_arguments(tmp_path: Path, args: list[str], needle: str) -> None:
    path, _ = sample_store(tmp_path)
    _assert_one_line_error(run_cli("history", *args, cwd=tmp_path, store=path), needle)


def test_an_invalid_setting_is_reported_unless_the_store_is_given(tmp_path: Path) -> None:
    path, _ = sample_store(tmp_path)
    bad = {"OTEL_SCOPE_STORE_MAX_MB": "lots"}
    _assert_one_line_error(
        run_cli("sessions", cwd=tmp_path, **bad), "OTEL_SCOPE_STORE_MAX_MB", "--store PATH"
    )
    assert run_cli("sessions", "--store", str(path), cwd=tmp_path, **bad).returncode == 0


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "line 1 is not JSON"),
        ('{"spans": "nope"}', "needs a 'spans' list"),
        (None, "cannot read"),
    ],
)
def test_an_unreadable_import_file_is_an_error(tmp_path: Path, content: str | None, needle: str) -> None:
    file = tmp_path / "trace.json"
    if content is not None:
        file.write_text(content)
    _assert_one_line_error(run_cli("import", str(file), "--no-store", cwd=tmp_path), str(file), needle)


def test_export_to_an_unwritable_place_is_an_error(tmp_path: Path) -> None:
    path, ids = sample_store(tmp_path)
    target = tmp_path / "missing-dir" / "out.json"
    _assert_one_line_error(
        run_cli("export", ids[0], "-o", str(target), cwd=tmp_path, store=path), f"cannot write {target}"
    )


def test_a_corrupt_store_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    _assert_one_line_error(run_cli("sessions", cwd=tmp_path, store=path), str(path))
