#!/usr/bin/env python3
"""The project's two set-up commands, needing only Python 3.10+ on the machine.

    python3 dev.py demo    install otel-scope, run the example app in hybrid mode, show its trace
    python3 dev.py test    install otel-scope with its test tools, lint, and run the test suite
    python3 dev.py bench   install the baselines (PySnooper, hunter, snoop) and run benchmarks/

Both create (or reuse) a virtual environment in ``.venv`` next to this file, so nothing is
installed into the system Python. ``.ci/run`` calls ``python3 dev.py test``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def run(*cmd: str | os.PathLike[str], **kw: object) -> int:
    print("+", " ".join(map(str, cmd)), flush=True)
    return subprocess.call([str(c) for c in cmd], cwd=ROOT, **kw)  # type: ignore[arg-type]


def ensure_venv(extras: str) -> None:
    if not (BIN / "python").exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
        run(BIN / "python", "-m", "pip", "install", "-q", "--upgrade", "pip")
    spec = f".[{extras}]" if extras else "."
    if run(BIN / "python", "-m", "pip", "install", "-q", "-e", spec) != 0:
        sys.exit("dev.py: installing otel-scope failed (see pip's message above)")


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e["VIRTUAL_ENV"] = str(VENV)
    e.pop("PYTHONPATH", None)
    return e


def test(args: list[str]) -> int:
    ensure_venv("test")
    for cmd in (("ruff", "check", "."), ("ruff", "format", "--check", ".")):
        if run(BIN / cmd[0], *cmd[1:], env=env()) != 0:
            return 1
    rc = run(BIN / "python", "-m", "pytest", *args, env=env())
    if rc == 5:
        print("dev.py: pytest collected no tests; that counts as a failure", file=sys.stderr)
        return 1
    return rc


def demo(args: list[str]) -> int:
    ensure_venv("")
    return run(BIN / "python", ROOT / "examples" / "run_demo.py", *args, env=env())


def bench(args: list[str]) -> int:
    ensure_venv("test,bench")
    rc = 0
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        rc |= run(BIN / "python", script, *args, env=env())
    return rc


def main() -> int:
    commands = {"test": test, "demo": demo, "bench": bench}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
