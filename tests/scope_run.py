"""Running real programs under ``opentelemetry-instrument`` for subprocess tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from otel_scope.store.records import TraceData

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
    # A run that hangs is killed with SIGABRT (see run_tree): faulthandler then prints where
    # every process of the tree was stuck, into the failure the test reports.
    env["PYTHONFAULTHANDLER"] = "1"
    env.update(extra or {})
    return env


def run_plain(
    script: str, tmp_path: Path, cwd: Path = APPS, timeout: float = 60, argv: list[str] | None = None
) -> Run:
    return run_tree([sys.executable, script, *(argv or [])], cwd, base_env(tmp_path), timeout)


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
    return run_tree(cmd, cwd, base_env(tmp_path, env), timeout)


class Hung(AssertionError):
    """A run that outlived its deadline; the message holds every process's stacks at that moment."""


def run_tree(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> Run:
    """Run ``cmd`` in a session of its own; past ``timeout`` abort every process in it.

    SIGABRT to the whole process group (the program and any children it forked) makes each
    Python process's faulthandler print its threads' stacks before dying, so a hang in CI says
    where it hung instead of only that it did.
    """
    pipe = subprocess.PIPE
    with subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=pipe, stderr=pipe, text=True, start_new_session=True
    ) as p:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            alive = _group(p.pid)
            exited = p.poll()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGABRT)
            time.sleep(1.0)  # faulthandler writes, then each process dies
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
            state = "the program was still running" if exited is None else f"the program exited {exited}"
            raise Hung(
                f"{cmd} did not end in {timeout} s; {state}; its process group then:\n{alive}"
                f"\n--- stdout\n{out}\n--- stderr\n{err}"
            ) from None
    return Run(p.returncode, out, err)


def _group(pgid: int) -> str:
    """The processes of group ``pgid`` (pid, parent, state, command), read from ``/proc``."""
    rows = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # state, ppid, pgrp, ...
        if int(fields[2]) == pgid:
            rows.append(f"  pid {entry.name} ppid {fields[1]} state {fields[0]}: {command[:200]}")
    return "\n".join(rows) or "  (none left)"


def stored_trace(tmp_path: Path, run: Run) -> TraceData:
    """The run's session trace, read from the local store in ``tmp_path`` (checked to exist)."""
    from otel_scope.store import SpanStore

    assert run.session_trace_id is not None, run.stderr
    store = SpanStore(tmp_path / "store.sqlite3", read_only=True)
    try:
        trace = store.get_trace(run.session_trace_id)
    finally:
        store.close()
    assert trace is not None, run.stderr
    return trace
