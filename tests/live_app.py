"""A long-running program under ``opentelemetry-instrument`` that tests control from outside.

``tests/apps/app_live.py`` processes orders until a stop file appears. :class:`LiveApp` starts it
with a private, short ``XDG_RUNTIME_DIR`` (socket paths are limited to about 100 bytes), waits
until it prints ``ready`` and its control socket exists, runs ``otel-scope targets ...`` against
it as a user would, and at the end returns everything the program printed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from scope_run import APPS, BIN, Run, base_env


class LiveApp:
    def __init__(self, tmp_path: Path, env: dict[str, str], flags: list[str] | None = None) -> None:
        self.stop_file = tmp_path / "stop"
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="osl-"))
        self.env = base_env(tmp_path, {**env, "XDG_RUNTIME_DIR": str(self.runtime_dir)})
        cmd = [str(BIN / "opentelemetry-instrument"), *(flags or []), sys.executable, "app_live.py"]
        self.proc = subprocess.Popen(
            [*cmd, str(self.stop_file)],
            cwd=APPS,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._stdout = threading.Thread(target=self._read_stdout, daemon=True)
        self._stdout.start()
        self._stderr: list[str] = []
        self._stderr_thread = threading.Thread(
            target=lambda: self._stderr.extend(self.proc.stderr), daemon=True
        )
        self._stderr_thread.start()

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if line == "ready\n":
                self._ready.set()

    @property
    def pid(self) -> int:
        return self.proc.pid  # opentelemetry-instrument execs python: the pid stays the same

    @property
    def socket(self) -> Path:
        return self.runtime_dir / "otel-scope" / f"{self.pid}.sock"

    def wait_ready(self, timeout: float = 90) -> None:  # a loaded CI machine starts it slowly
        assert self._ready.wait(timeout), f"never printed ready; stderr: {''.join(self._stderr)}"
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            assert time.monotonic() < deadline, f"no control socket; stderr: {''.join(self._stderr)}"
            time.sleep(0.02)

    def targets(self, *args: str) -> subprocess.CompletedProcess:
        """``otel-scope targets ARGS --pid PID`` as a user would type it."""
        return subprocess.run(
            [str(BIN / "otel-scope"), "targets", *args, "--pid", str(self.pid)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def finish(self, timeout: float = 30) -> Run:
        """Create the stop file and return what the program printed and its exit code."""
        self.stop_file.touch()
        try:
            code = self.proc.wait(timeout)
        finally:
            self.kill()
        self._stdout.join(5)
        self._stderr_thread.join(5)
        return Run(code, "".join(self.lines), "".join(self._stderr))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.runtime_dir, ignore_errors=True)


def plain_output(count: int, tmp_path: Path) -> Run:
    """What ``app_live.py`` prints without otel-scope when it processes ``count`` orders."""
    p = subprocess.run(
        [sys.executable, "app_live.py", "--count", str(count)],
        cwd=APPS,
        env=base_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Run(p.returncode, p.stdout, p.stderr)


def item_count(stdout: str) -> int:
    return sum(1 for line in stdout.splitlines() if line != "ready")
