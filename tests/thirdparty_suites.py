"""Run real libraries' own test suites with every one of their modules rewritten.

    python tests/thirdparty_suites.py                    # toolz, more-itertools, six
    python tests/thirdparty_suites.py six --level lines  # one library, another level
    python tests/thirdparty_suites.py stdlib             # nine pure-Python stdlib modules' suites

For each library this downloads its sdist from PyPI once (pinned version, into
``~/.cache/otel-scope-thirdparty``), unpacks it into a temporary directory and runs its test
suite with pytest twice, in fresh interpreters: as shipped, and with otel-scope's import hook
rewriting every function of every module of the library at the finest level (all locals, every
line, expression values: level ``expressions``) while an SDK tracer provider records every call.
The pass/fail/skip counts of the two runs must be identical; the script prints both, plus how
many functions were rewritten and how many spans and events were recorded, and exits non-zero on
any difference. Test modules themselves are left to pytest (its assertion rewriting owns them).

``stdlib`` does the same for pure-Python standard-library modules (textwrap, difflib, fractions,
shlex, argparse, statistics, calendar, configparser, string) with CPython's own unittest suites
from the ``test`` package, where the interpreter ships it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("OTEL_SCOPE_THIRDPARTY_CACHE", Path.home() / ".cache" / "otel-scope-thirdparty"))


@dataclass(frozen=True)
class Library:
    requirement: str  # name==version, downloaded as an sdist
    packages: tuple[str, ...]  # top-level modules/packages to rewrite
    tests: str  # what pytest runs, relative to the unpacked sdist

    @property
    def sdist(self) -> str:
        name, version = self.requirement.split("==")
        return f"{name}-{version}"


LIBRARIES = {
    "toolz": Library("toolz==1.0.0", ("toolz", "tlz"), "toolz"),
    "more-itertools": Library("more-itertools==10.5.0", ("more_itertools",), "tests"),
    "six": Library("six==1.16.0", ("six",), "test_six.py"),
}

PLUGIN = '''\
"""Loaded with pytest -p: rewrite the library under test before anything imports it."""
import os

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from otel_scope.compile_time import ImportHook, configure
from otel_scope.config.settings import Settings
from otel_scope.distro.ids import PrivateRandomIdGenerator
from otel_scope.targets.plan import CapturePlan

PACKAGES = os.environ["OTEL_SCOPE_SUITE_PACKAGES"].split(",")
PLANS = {"*": CapturePlan(level=os.environ["OTEL_SCOPE_SUITE_LEVEL"], target="suite")}


class Counter(SpanExporter):
    spans = events = 0

    def export(self, spans):
        Counter.spans += len(spans)
        Counter.events += sum(len(s.events) for s in spans)
        return SpanExportResult.SUCCESS


provider = TracerProvider(id_generator=PrivateRandomIdGenerator())  # leaves the program's random alone
provider.add_span_processor(SimpleSpanProcessor(Counter()))
trace.set_tracer_provider(provider)
configure(Settings(call_sampling=False))  # every call runs the rewritten body: equivalence, not cost


def plans_for(name):
    return PLANS if any(name == p or name.startswith(p + ".") for p in PACKAGES) else None


HOOK = ImportHook(plans_for)
HOOK.install()


def pytest_terminal_summary(terminalreporter):
    functions = sum(len(done) for done, _ in HOOK.results.values())
    skipped = sum(len(left) for _, left in HOOK.results.values())
    terminalreporter.write_line(
        f"OTEL-SCOPE modules={len(HOOK.results)} functions={functions} left_alone={skipped} "
        f"spans={Counter.spans} events={Counter.events}"
    )
'''

STDLIB_MODULES = ("textwrap", "difflib", "fractions", "shlex", "argparse", "statistics", "calendar")
STDLIB_MODULES += ("configparser", "string")

STDLIB_RUNNER = '''\
"""Run CPython's unittest suites for some modules, rewritten (argv[1] == "rewritten") or not."""
import io
import sys
import unittest

MODULES = sys.argv[2].split(",")
if sys.argv[1] == "rewritten":
    import otel_scope_suite_plugin as plugin  # the SDK provider and the counting exporter

    for name in MODULES:
        sys.modules.pop(name, None)  # imported at start-up by the plugin's own imports: re-import
for name in MODULES:
    __import__(name)
counts = {"passed": 0, "failed": 0, "skipped": 0}
for name in MODULES:
    result = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(
        unittest.defaultTestLoader.loadTestsFromName("test.test_" + name)
    )
    bad = len(result.failures) + len(result.errors)
    counts["failed"] += bad
    counts["skipped"] += len(result.skipped)
    counts["passed"] += result.testsRun - bad - len(result.skipped)
print("COUNTS", " ".join(f"{n} {k}" for k, n in counts.items()), "in")
if sys.argv[1] == "rewritten":
    plugin.pytest_terminal_summary(type("R", (), {"write_line": staticmethod(print)}))
'''

_COUNT = re.compile(r"(\d+) (passed|failed|skipped|xfailed|xpassed|errors?|deselected)")


def fetch(library: Library) -> Path:
    """The library's sdist, downloaded into the cache on first use."""
    CACHE.mkdir(parents=True, exist_ok=True)
    found = sorted(CACHE.glob(f"{library.sdist}.tar.gz"))
    if not found:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-d",
                str(CACHE),
                library.requirement,
            ],
            check=True,
        )
        found = sorted(CACHE.glob(f"{library.sdist}.tar.gz"))
    return found[0]


def unpack(library: Library, workdir: Path) -> Path:
    """The library's sdist (fetched if needed) unpacked into ``workdir``: its source tree."""
    with tarfile.open(fetch(library)) as tar:
        tar.extractall(workdir, filter="data") if sys.version_info >= (3, 12) else tar.extractall(workdir)
    return workdir / library.sdist


def summary_counts(stdout: str) -> dict[str, int]:
    """The counts of pytest's final summary line (``{"passed": 120, "skipped": 2}``); empty when
    pytest printed none (it crashed or did not run)."""
    lines = stdout.strip().splitlines()
    summary = next((line for line in reversed(lines) if _COUNT.search(line) and " in " in line), "")
    return {
        kind.rstrip("s") if kind.startswith("error") else kind: int(n) for n, kind in _COUNT.findall(summary)
    }


def run_suite(
    source: Path, library: Library, level: str | None, workdir: Path
) -> tuple[dict[str, int], str, float]:
    """Run the suite once (``level=None``: as shipped); return its counts, our summary, seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PYTEST_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(workdir), str(source)])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["XDG_CACHE_HOME"] = str(workdir / "cache")  # a cold rewrite cache each time
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", library.tests]
    if level is not None:
        env["OTEL_SCOPE_SUITE_PACKAGES"] = ",".join(library.packages)
        env["OTEL_SCOPE_SUITE_LEVEL"] = level
        args[3:3] = ["-p", "otel_scope_suite_plugin"]
    started = time.perf_counter()
    done = subprocess.run(args, cwd=source, env=env, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - started
    lines = done.stdout.strip().splitlines()
    counts = summary_counts(done.stdout)
    ours = next((line for line in lines if line.startswith("OTEL-SCOPE ")), "")
    if not counts:
        raise RuntimeError(
            f"no pytest summary for {library.requirement}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return counts, ours[len("OTEL-SCOPE ") :], seconds


def compare_stdlib(level: str = "expressions") -> dict:
    """Both runs of the standard-library suites (see the module doc), as :func:`compare` does."""
    with tempfile.TemporaryDirectory(prefix="otel-scope-suite-") as tmp:
        workdir = Path(tmp)
        (workdir / "otel_scope_suite_plugin.py").write_text(PLUGIN)
        (workdir / "run_stdlib.py").write_text(STDLIB_RUNNER)
        results = []
        for mode in ("plain", "rewritten"):
            env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PYTEST_"))}
            env.update(
                PYTHONPATH=str(workdir),
                PYTHONDONTWRITEBYTECODE="1",
                XDG_CACHE_HOME=str(workdir / "cache"),
                OTEL_SCOPE_SUITE_PACKAGES=",".join(STDLIB_MODULES),
                OTEL_SCOPE_SUITE_LEVEL=level,
            )
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, str(workdir / "run_stdlib.py"), mode, ",".join(STDLIB_MODULES)],
                env=env,
                capture_output=True,
                text=True,
                timeout=1800,
            )
            line = next((x for x in done.stdout.splitlines() if x.startswith("COUNTS ")), "")
            if not line:
                raise RuntimeError(
                    f"the stdlib suites did not run:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
                )
            ours = next((x for x in done.stdout.splitlines() if x.startswith("OTEL-SCOPE ")), "")
            counts = {kind: int(n) for n, kind in _COUNT.findall(line)}
            results.append((counts, ours[len("OTEL-SCOPE ") :], time.perf_counter() - started))
    (plain, _, plain_seconds), (rewritten, ours, rewritten_seconds) = results
    return {
        "library": f"CPython {sys.version.split()[0]} stdlib: " + ", ".join(STDLIB_MODULES),
        "plain": plain,
        "rewritten": rewritten,
        "same": plain == rewritten,
        "instrumentation": ours,
        "seconds": (round(plain_seconds, 1), round(rewritten_seconds, 1)),
    }


def compare(name: str, level: str = "expressions") -> dict:
    """Both runs of one library, as a dict (``same`` tells whether the counts are equal)."""
    if name == "stdlib":
        return compare_stdlib(level)
    library = LIBRARIES[name]
    with tempfile.TemporaryDirectory(prefix="otel-scope-suite-") as tmp:
        workdir = Path(tmp)
        source = unpack(library, workdir)
        (workdir / "otel_scope_suite_plugin.py").write_text(PLUGIN)
        plain, _, plain_seconds = run_suite(source, library, None, workdir)
        rewritten, ours, rewritten_seconds = run_suite(source, library, level, workdir)
    return {
        "library": library.requirement,
        "plain": plain,
        "rewritten": rewritten,
        "same": plain == rewritten,
        "instrumentation": ours,
        "seconds": (round(plain_seconds, 1), round(rewritten_seconds, 1)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "libraries", nargs="*", metavar="LIBRARY", help=f"any of {', '.join(LIBRARIES)} (default: all)"
    )
    parser.add_argument(
        "--level", default="expressions", choices=["boundaries", "locals", "lines", "expressions"]
    )
    options = parser.parse_args(argv)
    unknown = set(options.libraries) - set(LIBRARIES) - {"stdlib"}
    if unknown:
        parser.error(f"unknown libraries: {', '.join(sorted(unknown))}")
    failed = False
    for name in options.libraries or list(LIBRARIES):
        result = compare(name, options.level)
        failed |= not result["same"]
        print(f"{result['library']}: {'SAME' if result['same'] else 'DIFFERENT'}")
        print(f"  as shipped : {result['plain']}  ({result['seconds'][0]} s)")
        print(f"  rewritten  : {result['rewritten']}  ({result['seconds'][1]} s)")
        print(f"  otel-scope : {result['instrumentation']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
