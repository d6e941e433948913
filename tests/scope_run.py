"""Running real programs under ``opentelemetry-instrument`` for subprocess tests."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

APPS = Path(__file__).resolve().parent / "apps"
BIN = Path(sys.executable).parent
SESSION_LINE = "otel-scope: session "


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def stderr_without_session_line(self) -> str:
        """stderr minus the one line otel-scope adds at exit (documented in the README)."""
        return "".join(line for line in self.stderr.splitlines(True) if not line.startswith(SESSION_LINE))

    @property
    def session_trace_id(self) -> str | None:
        for line in self.stderr.splitlines():
            if line.startswith(SESSION_LINE):
                return line[len(SESSION_LINE) :].split()[0]
        return None


def base_env(tmp_path: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PYTHON"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["OTEL_SCOPE_STORE_PATH"] = str(tmp_path / "store.sqlite3")
    env["HOME"] = str(tmp_path)
    # Every call recorded: these programs' tests count calls and spans. Call sampling (on by
    # default for users) has its own tests, which turn it on.
    env["OTEL_SCOPE_CALL_SAMPLING"] = "false"
    env.update(extra or {})
    return env


def run_plain(
    script: str, tmp_path: Path, cwd: Path = APPS, timeout: float = 60, argv: list[str] | None = None
) -> Run:
    p = subprocess.run(
        [sys.executable, script, *(argv or [])],
        cwd=cwd,
        env=base_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Run(p.returncode, p.stdout, p.stderr)


def run_instrumented(
    script: str,
    flags: list[str],
    env: dict[str, str],
    tmp_path: Path,
    cwd: Path = APPS,
    timeout: float = 60,
    argv: list[str] | None = None,
) -> Run:
    cmd = [str(BIN / "opentelemetry-instrument"), *flags, sys.executable, script, *(argv or [])]
    p = subprocess.run(
        cmd, cwd=cwd, env=base_env(tmp_path, env), capture_output=True, text=True, timeout=timeout
    )
    return Run(p.returncode, p.stdout, p.stderr)
