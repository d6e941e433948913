#!/usr/bin/env python3
"""The project's two set-up commands, needing only Python 3.10+ on the machine.

    python3 dev.py demo    install otel-scope, run the example app in hybrid mode, show its trace
    python3 dev.py test    install otel-scope with its test tools (and, as root, Debian's chromium for
                           the view's browser tests), lint, and run the test suite on every CPython
                           3.10-3.13 found on the machine, one after another
    python3 dev.py bench   install the baselines (PySnooper, hunter, snoop) and run benchmarks/
    python3 dev.py docs    regenerate the import-graph table of docs/architecture.md

Both create (or reuse) a virtual environment in ``.venv`` next to this file, so nothing is
installed into the system Python. ``.ci/run`` calls ``python3 dev.py test``.
"""

from __future__ import annotations

import concurrent.futures
import glob
import os
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
SUPPORTED = ((3, 10), (3, 11), (3, 12), (3, 13))


def run(*cmd: str | os.PathLike[str], **kw: object) -> int:
    print("+", " ".join(map(str, cmd)), flush=True)
    return subprocess.call([str(c) for c in cmd], cwd=ROOT, **kw)  # type: ignore[arg-type]


def ensure_venv(extras: str, venv_dir: Path = VENV, python: str | None = None) -> Path:
    """Create (or reuse) ``venv_dir`` and install otel-scope with ``extras``; returns its bin dir."""
    bin_dir = venv_dir / ("Scripts" if os.name == "nt" else "bin")
    if not (bin_dir / "python").exists():
        if python is None:
            venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
        elif run(python, "-m", "venv", "--clear", venv_dir) != 0:
            sys.exit(f"dev.py: could not create a virtual environment with {python}")
        run(bin_dir / "python", "-m", "pip", "install", "-q", "--upgrade", "pip")
    spec = f".[{extras}]" if extras else "."
    if run(bin_dir / "python", "-m", "pip", "install", "-q", "-e", spec) != 0:
        sys.exit("dev.py: installing otel-scope failed (see pip's message above)")
    return bin_dir


def env(bin_dir: Path = BIN) -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{bin_dir}{os.pathsep}{e.get('PATH', '')}"
    e["VIRTUAL_ENV"] = str(bin_dir.parent)
    e.pop("PYTHONPATH", None)
    return e


def other_pythons() -> dict[tuple[int, int], str]:
    """Other supported CPythons on this machine (on PATH, or installed by pyenv), one per version."""
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found: dict[tuple[int, int], str] = {}
    for major, minor in SUPPORTED:
        if (major, minor) == sys.version_info[:2]:
            continue
        candidates = [shutil.which(f"python{major}.{minor}")]
        candidates += sorted(glob.glob(f"{root}/versions/{major}.{minor}.*/bin/python"), reverse=True)
        for candidate in filter(None, candidates):
            check = "import sys, venv; print(*sys.version_info[:2])"
            probe = subprocess.run([candidate, "-c", check], capture_output=True, text=True)
            if probe.returncode == 0 and probe.stdout.split() == [str(major), str(minor)]:
                found[(major, minor)] = candidate
                break
    return found


# Third-party sdists whose own test suites the tests run: fetched here, before the suite starts,
# so that no test downloads anything (tests/thirdparty_suites.py reads them from this folder).
THIRDPARTY = ROOT / ".cache" / "thirdparty"
SDISTS = ("toolz==1.0.0",)


def fetch_sdists(bin_dir: Path) -> None:
    THIRDPARTY.mkdir(parents=True, exist_ok=True)
    for requirement in SDISTS:
        name, version = requirement.split("==")
        if not list(THIRDPARTY.glob(f"{name}-{version}.tar.gz")):
            pip = (bin_dir / "python", "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:")
            if run(*pip, "-d", THIRDPARTY, requirement) != 0:
                sys.exit(f"dev.py: could not download the {requirement} sdist the tests run (see pip above)")


def workers() -> str:
    """pytest-xdist workers: the suite mostly waits on subprocesses, so twice the cores keeps the
    CPU busy. One interpreter at a time: four at once (16 workers on 2 cores) starved the tests
    that check exit deadlines and pool workers, which then failed for want of CPU."""
    return str(max(2, 2 * (os.cpu_count() or 1)))


def start_pytest(bin_dir: Path, args: list[str], log: Path, scale: str) -> subprocess.Popen[bytes]:
    e = env(bin_dir)
    e["OTEL_SCOPE_THIRDPARTY_CACHE"] = str(THIRDPARTY)
    e["OTEL_SCOPE_TEST_EXAMPLES"] = scale  # see tests/budget.py
    # The slowest tests are listed in each log: CI's time budget (10 minutes for all four) is
    # spent where they are.
    cmd = [str(bin_dir / "python"), "-m", "pytest", "-n", workers(), "-q", "--durations=12", *args]
    print("+", " ".join(cmd), f"> {log.relative_to(ROOT)}", flush=True)
    return subprocess.Popen(cmd, cwd=ROOT, env=e, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def ensure_chromium() -> None:
    """Debian's ``chromium`` for the web view's browser tests (Playwright drives it; Playwright's
    own browser downloads are never used). Installed with apt-get when missing and running as
    root; otherwise those tests skip and say why."""
    if any(shutil.which(name) for name in ("chromium", "chromium-browser")):
        return
    if os.name != "posix" or os.geteuid() != 0 or not shutil.which("apt-get"):
        print(
            "dev.py: chromium is not installed (the view's browser tests will skip); "
            "install it with `sudo apt-get install chromium`",
            file=sys.stderr,
        )
        return
    apt = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if run("apt-get", "install", "-y", "-q", "chromium", env=apt) != 0:
        run("apt-get", "update", "-q", env=apt)
        if run("apt-get", "install", "-y", "-q", "chromium", env=apt) != 0:
            print("dev.py: apt-get could not install chromium; browser tests will skip", file=sys.stderr)


def test(args: list[str]) -> int:
    """Lint, then the suite on every supported CPython, one after another, one log each.

    Each interpreter's suite runs in parallel (pytest-xdist) and its log is printed whole once its
    run ends, with one verdict line per interpreter and a total at the end.
    """
    ensure_venv("test")
    ensure_chromium()
    lint = (
        ("ruff", "check", "."),
        ("ruff", "format", "--check", "."),
        ("lint-imports",),  # the package layers, [tool.importlinter] in pyproject.toml
        ("mypy",),  # the types, [tool.mypy] in pyproject.toml
    )
    for cmd in lint:
        if run(BIN / cmd[0], *cmd[1:], env=env()) != 0:
            return 1
    fetch_sdists(BIN)
    interpreters = {sys.version_info[:2]: BIN}
    others = other_pythons()
    with concurrent.futures.ThreadPoolExecutor() as pool:  # pip waits on the network: install at once
        installs = {
            version: pool.submit(ensure_venv, "test", ROOT / f".venv-{version[0]}.{version[1]}", python)
            for version, python in others.items()
        }
        interpreters.update({version: future.result() for version, future in installs.items()})
    logs = ROOT / ".cache" / "test-logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    summary = []
    for (major, minor), bin_dir in interpreters.items():
        log = logs / f"python{major}.{minor}.log"
        rc = start_pytest(bin_dir, args, log, "1" if bin_dir == BIN else "0.25").wait()
        text = log.read_text(errors="replace")
        print(f"\n===== Python {major}.{minor} =====\n{text}", flush=True)
        last = (text.strip().splitlines() or ["(no output)"])[-1]
        verdict = "ok" if rc == 0 else ("FAILED: collected no tests" if rc == 5 else f"FAILED (exit {rc})")
        summary.append((f"Python {major}.{minor}", verdict, last.strip("= ")))
    for name, verdict, last in summary:
        print(f"dev.py: {name}: {verdict}: {last}")
    failed = [name for name, verdict, _ in summary if verdict != "ok"]
    took = time.monotonic() - started
    passed = len(summary) - len(failed)
    print(f"dev.py: {passed} of {len(summary)} interpreters passed in {took:.0f} s", flush=True)
    return 1 if failed else 0


def demo(args: list[str]) -> int:
    ensure_venv("")
    return run(BIN / "python", ROOT / "examples" / "run_demo.py", *args, env=env())


def bench(args: list[str]) -> int:
    ensure_venv("test,bench")
    rc = 0
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        rc |= run(BIN / "python", script, *args, env=env())
    return rc


def docs(args: list[str]) -> int:
    ensure_venv("test")
    return run(BIN / "python", ROOT / "docs" / "import_graph.py", *args, env=env())


def main() -> int:
    commands = {"test": test, "demo": demo, "bench": bench, "docs": docs}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
