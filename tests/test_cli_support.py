"""Running the real ``otel-scope`` console script in a subprocess, as users do (shared by the
``test_cli_*`` modules), and the script's top-level behaviour."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from otel_scope.store import LocalStoreSpanExporter
from test_timeline_sample import record_session

# The console script installed next to the interpreter running the tests (the venv's bin/).
OTEL_SCOPE = Path(sys.executable).with_name("otel-scope")
ESC = "\x1b"


def run_cli(*args: str, cwd: Path, store: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """``otel-scope ARGS`` with stdout and stderr captured through pipes.

    ``TERM`` names a colour terminal, so escape codes in the output would mean the CLI colours
    output that is not a terminal. Settings come only from ``store`` and ``env``.
    """
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_SCOPE_")}
    for name in ("FORCE_COLOR", "NO_COLOR", "COLUMNS", "TTY_COMPATIBLE"):
        clean.pop(name, None)
    clean["TERM"] = "xterm-256color"
    if store is not None:
        clean["OTEL_SCOPE_STORE_PATH"] = str(store)
    clean.update(env)
    return subprocess.run(
        [str(OTEL_SCOPE), *args], capture_output=True, text=True, cwd=cwd, env=clean, timeout=60, check=False
    )


def fill_store(path: Path, *names: str) -> list[str]:
    """Record one sample session per name into the store at ``path``, oldest first; their IDs."""
    exporter = LocalStoreSpanExporter(path=path)
    ids = [record_session(exporter, session_name=name, base_us=i * 10_000) for i, name in enumerate(names)]
    exporter.shutdown()
    return ids


def sample_store(tmp_path: Path) -> tuple[Path, list[str]]:
    """A local store holding the sessions "first" and then "checkout" (the most recent)."""
    path = tmp_path / "state" / "traces.sqlite3"
    return path, fill_store(path, "first", "checkout")


def test_the_console_script_lists_every_subcommand(tmp_path: Path) -> None:
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("history", "sessions", "view", "export", "import"):
        assert command in result.stdout


def test_no_subcommand_prints_usage_and_exits_2(tmp_path: Path) -> None:
    result = run_cli(cwd=tmp_path)
    assert result.returncode == 2 and "usage: otel-scope" in result.stderr


def test_version_is_printed(tmp_path: Path) -> None:
    from otel_scope import __version__

    result = run_cli("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"otel-scope {__version__}"
