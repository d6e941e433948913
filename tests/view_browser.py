"""What the web view tests share: the example shop's recorded trace, the server, and Chromium.

The browser is Debian's ``chromium`` driven by Playwright for Python; Playwright's own browser
downloads are never used (``dev.py test`` installs the Debian package when it is missing and it
can). Screenshots are test artefacts in each test's ``tmp_path`` (pytest keeps the last runs'
under its base temporary directory), or in ``$OTEL_SCOPE_TEST_ARTIFACTS`` when that is set.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scope_run import BIN, base_env, run_instrumented

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
# Headless, and nothing that reaches the network on its own (updates, sync, field trials, QUIC).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_LINE = re.compile(r"at (http://127\.0\.0\.1:\d+/)")


def chromium_path() -> str | None:
    found = next((p for p in CHROMIUM_PATHS if os.access(p, os.X_OK)), None)
    return found or shutil.which("chromium")


@dataclass
class ExampleTrace:
    trace_id: str
    env: dict[str, str]
    store: Path


def record_example(tmp: Path) -> ExampleTrace:
    """Run examples/app.py in hybrid mode into a fresh local store (the README's main job)."""
    run = run_instrumented("app.py", ["--scope-mode", "hybrid"], {}, tmp, cwd=EXAMPLES)
    assert run.returncode == 0, run.stderr
    assert run.session_trace_id, run.stderr
    return ExampleTrace(run.session_trace_id, base_env(tmp), tmp / "store.sqlite3")


def view(example: ExampleTrace, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "otel-scope"), "view", *args],
        env=example.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]


def start_server(example: ExampleTrace, *args: str) -> Iterator[Server]:
    """``otel-scope view --no-browser`` in a subprocess, until the test is done with it."""
    process = subprocess.Popen(
        [str(BIN / "otel-scope"), "view", "--no-browser", *args],
        env=example.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        match = SERVER_LINE.search(line)
        if match is None:
            process.kill()
            _, err = process.communicate(timeout=10)
            pytest.fail(f"otel-scope view did not start: {line!r} {err!r}")
        yield Server(match.group(1), process)
    finally:
        process.terminate()
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def launch_chromium(playwright):  # type: ignore[no-untyped-def]
    path = chromium_path()
    if path is None:
        pytest.skip(
            "Chromium is not installed and could not be: `apt-get install chromium` (as root) "
            "provides /usr/bin/chromium for the view's browser tests"
        )
    return playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)


def screenshot(page, name: str, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    """Save a full-page screenshot as a test artefact."""
    chosen = os.environ.get("OTEL_SCOPE_TEST_ARTIFACTS")
    directory = Path(chosen) if chosen else tmp_path
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
