"""What otel-scope adds to the start of ``opentelemetry-instrument``, against the stock CLI alone.

    .venv/bin/python benchmarks/bench_startup.py [--repeat N] [--top K] [--json FILE] [--instructions]

The 1.0x is the stock CLI *without otel-scope*: a baseline virtual environment holding the same
``opentelemetry-*`` distributions at the same versions as this one (read with
:mod:`importlib.metadata`, installed with pip), and those that run code at every interpreter
start (a ``.pth`` file, as hunter's), created on the first run and then reused from
``$XDG_CACHE_HOME/otel-scope-bench`` (else ``~/.cache/otel-scope-bench``), one per Python version
and set of pinned requirements. A baseline inside this environment would not do: the stock CLI
loads every distro, configurator and environment-variable entry point installed, so otel-scope's
modules would be imported even there and the difference would understate what it costs.

Each command runs an empty program (``python -c pass``) in a fresh process, ``--repeat`` times,
interleaved (one of each in turn, so a slow moment on the machine is shared by all), after one
untimed warm-up run each (which fills the bytecode caches):

* ``python -c pass``: the interpreter alone.
* ``baseline CLI``: the baseline environment's ``opentelemetry-instrument python -c pass``.
* ``plain OTel distro``: the same in a second baseline environment that also has
  ``opentelemetry-distro`` (at the instrumentation's version), with traces to the console exporter
  and metrics and logs off: the plain OpenTelemetry way to start a program with a configured
  SDK, which the bare stock CLI does not do.
* ``off``: this environment's ``opentelemetry-instrument --scope-mode off python -c pass``.
* ``runtime``: ``--scope-mode runtime --scope-targets json:dumps`` (a target that exists).
* ``compile_time``: ``--scope-mode compile_time --scope-locals json:dumps``.
* ``hybrid``: ``--scope-mode hybrid --scope-targets json:dumps --scope-locals json:dumps``.

The environment is the default one a user gets (the exporter is chosen as otel-scope chooses it:
the local store unless a collector answers), with ``OTEL_*`` and ``PYTHON*`` variables cleared
and the local store in a temporary directory. Printed: median and min wall time per command,
what each adds over the baseline CLI and over the plain OTel distro (median and min), and the
ratios of medians. Then, for ``off`` and ``runtime``, ``python -X importtime``'s view of what
otel-scope makes the start import: the modules (otel-scope's and what they pull in, the SDK's
configuration for one) that the same process of the baseline CLI does not import, their total
own (self) import time, and the imports that bring them in (those not imported by another such
module) by cumulative time, with the module that imported each; separately in the CLI process
(which loads otel-scope's flag names before it parses its options) and in the program
(``sitecustomize``: distro, configurator, instrumentor); the lowest figures of three runs.
A module imported through :func:`importlib.import_module`, as the stock CLI loads entry points,
is not timed by ``-X importtime`` (what it imports is), so the distro's own modules may be absent.

With ``--instructions``, each command also runs once under valgrind's callgrind (when installed),
which counts the instructions the program's process executes (from the CLI's ``exec`` of it to
its exit, every thread): a figure that stays the same from run to run, whatever else the machine
does, where wall times on a shared virtual machine spread by tens of milliseconds. Printed: the
instructions per command and what each adds over the baseline CLI and over the plain OTel
distro, in millions and as a share. They are not converted to milliseconds: instructions do not
all cost the same (the interpreter alone runs 3.3 million per millisecond here, the stock CLI's
imports 2.2 million).

Even in ``off`` mode otel-scope is the distro: it configures the OpenTelemetry SDK (a tracer
provider and an exporter, so other instrumentations still export), which the bare stock CLI
never does; that is part of what ``off`` adds here.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

BIN = Path(sys.executable).parent
CLI = str(BIN / "opentelemetry-instrument")
EMPTY = ("-c", "pass")
TARGET = "json:dumps"

MODES = {
    "off": ["--scope-mode", "off"],
    "runtime": ["--scope-mode", "runtime", "--scope-targets", TARGET],
    "compile_time": ["--scope-mode", "compile_time", "--scope-locals", TARGET],
    "hybrid": ["--scope-mode", "hybrid", "--scope-targets", TARGET, "--scope-locals", TARGET],
}
IMPORTTIME_MODES = ("off", "runtime")


def baseline_requirements() -> list[str]:
    """``name==version`` of every ``opentelemetry-*`` distribution in this environment, and of
    every other one (otel-scope aside) that installs a ``.pth`` file: those run code at every
    interpreter start (``hunter.pth`` imports hunter, about 30 ms), so leaving them out of the
    baseline would count their cost as otel-scope's."""
    found = {}
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        starts_code = any(str(file).endswith(".pth") for file in dist.files or ())
        if name.startswith("opentelemetry-") or (starts_code and name != "otel-scope"):
            found[name] = dist.version
    return sorted(f"{name}=={version}" for name, version in found.items())


def otel_distro_requirement() -> str:
    """``opentelemetry-distro`` at the version of the installed ``opentelemetry-instrumentation``
    (the two are released together)."""
    return f"opentelemetry-distro=={importlib.metadata.version('opentelemetry-instrumentation')}"


def baseline_venv(extra: tuple[str, ...] = ()) -> Path:
    """The cached environment with the same OpenTelemetry distributions, ``extra`` and no
    otel-scope."""
    requirements = baseline_requirements() + list(extra)
    key = hashlib.sha256(json.dumps([sys.version, requirements]).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "otel-scope-bench"
    venv = cache / f"startup-baseline-{key}"
    done = venv / "requirements.txt"
    if done.exists():
        return venv
    print(f"creating the baseline environment {venv} (once) ...", file=sys.stderr, flush=True)
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *requirements], check=True)
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "import otel_scope"], capture_output=True)
    if probe.returncode == 0:
        sys.exit(f"{venv} can import otel_scope: it is no baseline")
    done.write_text("\n".join(requirements) + "\n")  # written last: marks the environment complete
    return venv


# What the plain-OTel row sets: traces to the console exporter (it prints nothing for a program
# that makes no span), metrics and logs off, as otel-scope's default set-up has them.
OTEL_DISTRO_ENV = {
    "OTEL_TRACES_EXPORTER": "console",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
}


def commands(baseline: Path, otel_distro: Path) -> dict[str, list[str]]:
    python = sys.executable
    out = {
        "python -c pass": [python, *EMPTY],
        "baseline CLI": [
            str(baseline / "bin" / "opentelemetry-instrument"),
            str(baseline / "bin" / "python"),
            *EMPTY,
        ],
        "plain OTel distro": [
            str(otel_distro / "bin" / "opentelemetry-instrument"),
            str(otel_distro / "bin" / "python"),
            *EMPTY,
        ],
    }
    for mode, flags in MODES.items():
        out[mode] = [CLI, *flags, python, *EMPTY]
    return out


def command_env(name: str, env: dict[str, str]) -> dict[str, str]:
    """The environment command ``name`` runs in: the plain-OTel row adds its SDK settings."""
    return {**env, **OTEL_DISTRO_ENV} if name == "plain OTel distro" else env


def clean_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PYTHON"))}
    env["OTEL_SCOPE_STORE_PATH"] = str(tmp / "startup.sqlite3")
    return env


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def time_commands(
    cmds: dict[str, list[str]], repeat: int, env: dict[str, str], cwd: Path
) -> dict[str, list[float]]:
    envs = {name: command_env(name, env) for name in cmds}
    for name, cmd in cmds.items():
        _run(cmd, envs[name], cwd)  # warm-up: bytecode caches, the baseline's first start
    seconds: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(repeat):
        for name, cmd in cmds.items():
            started = time.perf_counter()
            _run(cmd, envs[name], cwd)
            seconds[name].append(time.perf_counter() - started)
    return seconds


class Import(NamedTuple):
    own_us: int
    cumulative_us: int
    parent: str  # the module whose import imported this one ("" at the top)


def parse_importtime(stderr: str) -> dict[str, Import]:
    """Every module in ``-X importtime`` output, with its times and the import that caused it.

    A module's line comes after its children's, which are indented one step deeper.
    """
    rows: dict[str, Import] = {}
    waiting: list[tuple[int, str, int, int]] = []  # lines whose parent has not been printed yet
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        own, cumulative, field = line.removeprefix("import time:").split("|")
        if not own.strip().isdigit():  # the header line
            continue
        name = field.strip()
        depth = len(field) - len(field.lstrip())
        while waiting and waiting[-1][0] > depth:
            _, child, child_own, child_cumulative = waiting.pop()
            rows[child] = Import(child_own, child_cumulative, name)
        waiting.append((depth, name, int(own), int(cumulative)))
    for _, name, own_us, cumulative_us in waiting:
        rows[name] = Import(own_us, cumulative_us, "")
    return rows


def importtime(
    mode: str, baseline: Path, env: dict[str, str], cwd: Path, runs: int = 3
) -> dict[str, dict[str, Import]]:
    """The modules one mode imports and the baseline CLI does not, in the CLI process and in
    the program, each with its lowest ``-X importtime`` figures of ``runs`` runs."""
    flags, python = MODES[mode], sys.executable
    base_cli, base_python = (
        str(baseline / "bin" / "opentelemetry-instrument"),
        str(baseline / "bin" / "python"),
    )
    commands = {
        "CLI process": (
            [python, "-X", "importtime", CLI, *flags, python, *EMPTY],
            [base_python, "-X", "importtime", base_cli, base_python, *EMPTY],
        ),
        "program": (
            [CLI, *flags, python, "-X", "importtime", *EMPTY],
            [base_cli, base_python, "-X", "importtime", *EMPTY],
        ),
    }
    out = {}
    for process, (ours, theirs) in commands.items():
        in_baseline = parse_importtime(_run(theirs, env, cwd).stderr)
        best: dict[str, Import] = {}
        for _ in range(runs):
            for name, row in parse_importtime(_run(ours, env, cwd).stderr).items():
                if name in in_baseline:
                    continue
                seen = best.get(name, row)
                best[name] = row._replace(
                    own_us=min(seen.own_us, row.own_us),
                    cumulative_us=min(seen.cumulative_us, row.cumulative_us),
                )
        out[process] = best
    return out


def instructions(cmd: list[str], env: dict[str, str], cwd: Path) -> int:
    """What callgrind counts for ``cmd``'s program: ``Ir`` of the process the CLI hands over to
    with ``exec``, which callgrind follows (``--trace-children``) and reports as one part."""
    with tempfile.TemporaryDirectory(prefix="otel-scope-callgrind-") as out:
        valgrind = [
            "valgrind",
            "--tool=callgrind",
            "--trace-children=yes",
            f"--callgrind-out-file={out}/cg.%p",
        ]
        _run([*valgrind, *cmd], env, cwd)
        return sum(
            int(line.split()[1])
            for dump in Path(out).glob("cg.*")
            for line in dump.read_text(errors="replace").splitlines()
            if line.startswith("summary:")
        )


def print_instructions(counts: dict[str, int]) -> None:
    base, otel = counts["baseline CLI"], counts["plain OTel distro"]
    print(
        "\ninstructions of the program's process (callgrind, one run each; millions)\n"
        f"{'command':18} {'count':>8}   {'over the baseline CLI':>18}   {'over plain OTel distro':>18}"
    )
    for name, count in counts.items():
        row = f"{name:18} {count / 1e6:8.1f}"
        if name not in ("python -c pass", "baseline CLI"):
            row += _added(count, base)
        if name in MODES:
            row += _added(count, otel)
        print(row)


def _added(count: int, over: int) -> str:
    return f"   {(count - over) / 1e6:+9.1f} {count / over - 1:+8.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="timed runs per command (default 15)")
    parser.add_argument("--top", type=int, default=8, help="modules listed per process (default 8)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--instructions", action="store_true", help="also count instructions with valgrind's callgrind"
    )
    args = parser.parse_args()
    if args.instructions and shutil.which("valgrind") is None:
        sys.exit("--instructions needs valgrind (Debian: apt-get install valgrind)")
    baseline = baseline_venv()
    otel_distro = baseline_venv((otel_distro_requirement(),))
    with tempfile.TemporaryDirectory(prefix="otel-scope-startup-") as tmp_name:
        tmp = Path(tmp_name)
        env = clean_env(tmp)
        seconds = time_commands(commands(baseline, otel_distro), args.repeat, env, tmp)
        imports = {mode: importtime(mode, baseline, env, tmp) for mode in IMPORTTIME_MODES}
        counts: dict[str, int] = {}
        if args.instructions:
            for name, cmd in commands(baseline, otel_distro).items():
                counts[name] = instructions(cmd, command_env(name, env), tmp)

    base_median = statistics.median(seconds["baseline CLI"])
    base_min = min(seconds["baseline CLI"])
    otel_median = statistics.median(seconds["plain OTel distro"])
    otel_min = min(seconds["plain OTel distro"])
    print(f"\nstart-up of an empty program, {args.repeat} interleaved runs each (ms)")
    print(
        f"{'':18} {'':17}   {'added over the baseline CLI':>28}   {'added over plain OTel distro':>28}\n"
        f"{'command':18} {'median':>8} {'min':>8}   {'median':>9} {'min':>8} {'ratio':>9}"
        f"   {'median':>9} {'min':>8} {'ratio':>9}"
    )
    for name, runs in seconds.items():
        median, best = statistics.median(runs), min(runs)
        added = ""
        if name not in ("python -c pass", "baseline CLI"):
            added = (
                f"{(median - base_median) * 1000:+9.1f} {(best - base_min) * 1000:+8.1f} "
                f"{median / base_median:8.2f}x"
            )
        if name in MODES:
            added += (
                f"   {(median - otel_median) * 1000:+9.1f} {(best - otel_min) * 1000:+8.1f} "
                f"{median / otel_median:8.2f}x"
            )
        print(f"{name:18} {median * 1000:8.1f} {best * 1000:8.1f}   {added}")
    if counts:
        print_instructions(counts)
    for mode, processes in imports.items():
        for process, rows in processes.items():
            total = sum(row.own_us for row in rows.values()) / 1000
            ours = sum(name.split(".")[0] == "otel_scope" for name in rows)
            # The imports that bring in the others: those not imported by another extra module.
            roots = {name: row for name, row in rows.items() if row.parent not in rows}
            print(
                f"\n{mode}, {process}: {len(rows)} modules the baseline CLI does not import "
                f"({ours} of otel-scope), {total:.1f} ms of their own import time; the imports "
                "that bring them in, by cumulative time (ms), and what imported each:"
            )
            for name, row in sorted(roots.items(), key=lambda item: -item[1].cumulative_us)[: args.top]:
                print(f"  {row.cumulative_us / 1000:7.1f}  {name:55} {row.parent or '(top)'}")
    if args.json:
        figures = {
            "repeat": args.repeat,
            "seconds": seconds,
            "importtime_us": imports,
            "instructions": counts,
        }
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
