"""Functions compile-time capture cannot rewrite, met by wildcards over real packages from PyPI
(rich, jinja2, attrs, packaging): each is said once at debug level, and each batch in one line.

The programs run under ``opentelemetry-instrument`` in a subprocess (``tests/apps/app_wildcards.py``).
``packaging`` is imported by opentelemetry-instrumentation before the program starts, so its
skips make the line printed at start; rich, jinja2 and attrs are imported by the program, so
theirs make the line printed at exit.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

from scope_run import run_instrumented, run_plain

FLAGS = ["--scope-mode", "compile_time", "--scope-targets", "packaging.*,rich.*,jinja2.*,attr.*"]
ENV = {"OTEL_TRACES_EXPORTER": "none", "OTEL_SCOPE_CONTROL": "false"}
SUMMARY = re.compile(
    r"otel-scope: skipped (\d+) functions: (.+) \(no compile-time capture for them; each is named "
    r"at debug level, logger otel_scope\)$"
)
DEBUG = re.compile(r"debug: otel-scope: compile-time capture skips (\S+) \(([^)]+(?:\(\))?[^)]*)\): .+$")


def counts(line: str) -> dict[str, int]:
    match = SUMMARY.match(line)
    assert match, line
    by_class = {kind: int(n) for n, kind in (part.split(" ", 1) for part in match.group(2).split(", "))}
    assert sum(by_class.values()) == int(match.group(1))
    return by_class


def test_a_wildcard_over_real_packages_prints_one_summary_line_at_start_and_one_at_exit(
    tmp_path: Path,
) -> None:
    plain = run_plain("app_wildcards.py", tmp_path)
    traced = run_instrumented("app_wildcards.py", FLAGS, ENV, tmp_path)
    assert (traced.returncode, traced.stdout) == (plain.returncode, plain.stdout) == (0, plain.stdout)
    ours = [line for line in traced.stderr.splitlines() if line.startswith("otel-scope: ")]
    assert len(ours) == 3 and ours[2].startswith("otel-scope: session "), traced.stderr
    assert set(counts(ours[0])) == {"generated"}  # packaging's namedtuples
    at_exit = counts(ours[1])
    assert at_exit["generated"] >= 10 and at_exit["use exec/locals()/frame access"] >= 2
    assert traced.stderr_without_session_line.count("\n") == 2  # nothing else: no warnings


def test_each_skipped_function_is_said_once_at_debug_level_and_counted_once(tmp_path: Path) -> None:
    traced = run_instrumented("app_wildcards.py", FLAGS, ENV, tmp_path, argv=["--debug"])
    assert traced.returncode == 0, traced.stderr
    said = [DEBUG.match(line) for line in traced.stderr.splitlines() if "compile-time capture skips" in line]
    assert all(said)
    functions = Counter(m.group(1) for m in said if m)
    assert functions.most_common(1)[0][1] == 1  # no function said twice
    kinds = {m.group(1): m.group(2) for m in said if m}
    assert kinds["rich.console.Console._caller_frame_info"] == "use exec/locals()/frame access"
    assert kinds["jinja2.lexer.Token._make"] == "generated"  # a namedtuple's method
    assert kinds["attr.validators._InstanceOfValidator.__init__"] == "generated"  # made by attrs
    assert kinds["attr._make._compile_and_eval"] == "use exec/locals()/frame access"
    # The program's handler is there from its first line: it sees what the exit line counts
    # (packaging's skips, at start, came before it).
    *_, at_exit = [line for line in traced.stderr.splitlines() if line.startswith("otel-scope: skipped")]
    assert sum(counts(at_exit).values()) == len(functions)
    assert "left uninstrumented" not in traced.stderr and "could not instrument" not in traced.stderr


def test_a_function_named_exactly_that_cannot_be_rewritten_gets_one_warning(memory, caplog) -> None:
    import rich.console

    from otel_scope.config import Settings, parse_pattern
    from otel_scope.engine import Engine
    from otel_scope.targets.planner import Request

    engine = Engine(Settings(mode="compile_time"))
    try:
        with caplog.at_level(logging.WARNING, logger="otel_scope"):
            engine.add(Request(parse_pattern("rich.console:Console._caller_frame_info"), capture_locals=None))
            engine.add(Request(parse_pattern("rich.console:Console._caller_frame_info"), lines=(1,)))
        assert [r.getMessage() for r in caplog.records] == [
            "otel-scope: rich.console.Console._caller_frame_info left uninstrumented: cannot recompile "
            "Console._caller_frame_info: it uses .currentframe, which would see the recorder's local"
        ]
        assert rich.console.Console._caller_frame_info(0)  # unchanged
    finally:
        engine.remove_all()


def test_wildcards_leave_functions_other_modules_copied_into_a_class_alone() -> None:
    """Every enum's class holds ``Enum._generate_next_value_``; a wildcard over packaging must not
    instrument the standard library's enum (nor claim enum.py was edited when it fails)."""
    import packaging._elffile
    import packaging.version

    from otel_scope.config import parse_pattern
    from otel_scope.engine.discovery import iter_sites

    elffile = {s.qualname for s in iter_sites(packaging._elffile, parse_pattern("packaging._elffile:*"))}
    assert "ELFFile.__init__" in elffile
    assert not [q for q in elffile if q.endswith("._generate_next_value_")]
    version = {s.qualname for s in iter_sites(packaging.version, parse_pattern("packaging.version:*"))}
    assert "_Version._make" in version  # a namedtuple's methods are made for that class: its own


def test_namedtuple_methods_a_hybrid_locals_only_request_cannot_rewrite_get_a_runtime_span_said_once(
    memory, caplog, monkeypatch
) -> None:
    """``--scope-locals 'sched:*'`` in hybrid mode asks for a span per call with its locals; the
    generated methods of ``sched.Event`` and of packaging's ``_Version`` (namedtuples) have no
    source to rewrite, so they get a runtime span instead, and the skip is one debug line each."""
    import sched

    import packaging.version

    from otel_scope.compile_time import skips
    from otel_scope.config import Settings, parse_pattern
    from otel_scope.engine import Engine
    from otel_scope.targets.planner import Request

    monkeypatch.setattr(skips, "note", skips.Skips().note)  # a fresh ledger: this test's lines only
    engine = Engine(Settings(mode="hybrid"))
    try:
        with caplog.at_level(logging.DEBUG, logger="otel_scope"):
            for pattern in ("sched:*", "packaging.version:_Version.*", "sched:Event._make"):
                engine.add(Request(parse_pattern(pattern), runtime=False, capture_locals=None))
        event = sched.Event._make([1] * len(sched.Event._fields))
        assert event._replace(time=2.0).time == 2.0 and event._asdict()["priority"] == 1
        fields = packaging.version._Version._fields
        assert packaging.version._Version._make([0] * len(fields))._replace(epoch=1).epoch == 1
        names = {s.name for s in memory.spans()}
        assert {"sched.Event._make", "sched.Event._replace", "sched.Event._asdict"} <= names
        assert "packaging.version._Version._replace" in names
        installed = {a["function"]: a for a in engine.active()}
        assert installed["sched.Event._make"]["installed"] == "code trampoline"
        said = Counter(
            r.getMessage().split(" (")[0]
            for r in caplog.records
            if "compile-time capture skips" in r.getMessage() and r.levelno == logging.DEBUG
        )
        assert said["otel-scope: compile-time capture skips sched.Event._make"] == 1
        assert set(said.values()) == {1}
        # Named exactly: one warning, which says the function is traced all the same.
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
            "otel-scope: sched.Event._make gets a runtime span only, no locals: cannot recompile "
            "Event._make: not found in the current source"
        ]
    finally:
        engine.remove_all()


HOOKED_SCHED = """
import sys
from otel_scope.config import Settings, parse_pattern
from otel_scope.engine import Engine
from otel_scope.targets.planner import Request
from sdk import installed_provider

with installed_provider() as memory:
    engine = Engine(Settings(mode="hybrid"))
    engine.compile_time.install_import_hook()
    engine.add(Request(parse_pattern("sched:*"), runtime=False, capture_locals=None))
    assert "sched" not in sys.modules
    import sched  # rewritten by the import hook, which skips the namedtuple's methods

    sched.Event._make([1] * len(sched.Event._fields))._replace(time=2)
    print(sorted({s.name for s in memory.spans()}))
"""


def test_namedtuple_methods_skipped_by_the_import_hook_under_a_hybrid_locals_only_request_get_a_runtime_span(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    tests = Path(__file__).resolve().parent
    done = subprocess.run(
        [sys.executable, "-c", HOOKED_SCHED], cwd=tests, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['sched.Event._make', 'sched.Event._replace']"
