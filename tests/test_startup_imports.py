"""What a start under the real ``opentelemetry-instrument`` imports, per mode (issue 14, startup).

Every start of the stock CLI imports otel-scope twice: in the CLI's own process (for the flag
names) and in the program (distro, configurator, instrumentor). These tests pin down which
modules each start loads, by reading ``sys.modules`` at the end of a real program (and the CLI
process's ``-X importtime`` list of module names); the cost itself is measured by
``benchmarks/bench_startup.py``, not here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scope_run import BIN, base_env, run_tree

# Prints, as its last line, the modules loaded by the time the program's own code ends.
_LOADED = "import json, sys; print(json.dumps(sorted(sys.modules)))"
CLI = str(BIN / "opentelemetry-instrument")


def _loaded_by_program(flags: list[str], tmp_path: Path) -> set[str]:
    # The local store as the one exporter: the choice must not depend on a collector that
    # happens to listen on this machine.
    env = base_env(tmp_path, {"OTEL_TRACES_EXPORTER": "otel_scope", "OTEL_SCOPE_CONTROL": "false"})
    run = run_tree([CLI, *flags, sys.executable, "-c", _LOADED], tmp_path, env, timeout=60)
    assert run.returncode == 0, run.stderr
    return set(json.loads(run.stdout.splitlines()[-1]))


def _below(modules: set[str], *packages: str) -> set[str]:
    return {m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)}


def test_off_mode_loads_neither_the_instrumentation_nor_the_store_nor_an_unused_exporter(tmp_path):
    loaded = _loaded_by_program(["--scope-mode", "off"], tmp_path)
    assert "otel_scope.distro" in loaded  # otel-scope did run, as the distro
    assert not _below(
        loaded,
        "libcst",
        "otel_scope.api",
        "otel_scope.bootstrap",
        "otel_scope.engine",
        "otel_scope.compile_time",
        "otel_scope.runtime",
        "otel_scope.capture",
        "otel_scope.timeline",
        "otel_scope.control",
        # The local store's exporter is configured, but opens SQLite only on its first export.
        "otel_scope.store.spanstore",
        "sqlite3",
        # Traces only are configured: the SDK's configurator module and the metrics and logs SDKs
        # it imports are not needed.
        "opentelemetry.sdk._configuration",
        "opentelemetry.sdk.metrics",
        "opentelemetry.sdk._logs",
        # The OTLP exporters are not configured: their classes are not needed either.
        "grpc",
        "opentelemetry.exporter.otlp.proto.grpc",
        "opentelemetry.exporter.otlp.proto.http",
    )


def test_runtime_mode_loads_neither_rewriter_nor_recorder_nor_modules_only_some_programs_use(tmp_path):
    loaded = _loaded_by_program(["--scope-mode", "runtime", "--scope-targets", "json:dumps"], tmp_path)
    assert "otel_scope.runtime.wrappers" in loaded  # the target was applied
    assert not _below(
        loaded,
        "libcst",
        "otel_scope.compile_time.rewriter",
        "otel_scope.timeline",
        "rich",
        "opentelemetry.sdk._configuration",
        "opentelemetry.sdk.metrics",
        # Message capture patches multiprocessing once the program imports it, with its adapter
        # for processes; OpAMP, source hashing and "nearest name" hints load only where used.
        "multiprocessing",
        "otel_scope.runtime.messages.processes",
        "pickle",
        "tomllib",
        "hashlib",
        "difflib",
        # The import hook is installed; the compile-time recorder is not needed until it rewrites.
        "otel_scope.compile_time.recorder",
        "otel_scope.compile_time.spec",
        # Escalation is off in runtime mode unless asked for, and the exception frames with it.
        "otel_scope.runtime.escalation",
        "otel_scope.runtime.exception_frames",
    )


# Prints the dataclasses defined by otel-scope's modules loaded by the time the program ends.
_OUR_DATACLASSES = (
    "import dataclasses, json, sys; print(json.dumps(sorted("
    "f'{name}.{key}' for name, module in list(sys.modules.items()) if name.startswith('otel_scope') "
    "for key, value in vars(module).items() "
    "if isinstance(value, type) and dataclasses.is_dataclass(value) and value.__module__ == name)))"
)


@pytest.mark.parametrize(
    "flags", [["--scope-mode", "off"], ["--scope-mode", "runtime", "--scope-targets", "json:dumps"]]
)
def test_a_start_creates_no_dataclass_of_otel_scope_but_the_settings(flags, tmp_path):
    """Creating a dataclass execs its generated methods: about 0.5 ms each at every start (a
    named tuple costs a sixth of that, a plain class with ``__slots__`` almost nothing). The
    patterns, plans, requests and the engine's records are named tuples or plain classes; the
    settings model, one class with 33 fields and a computed default, is still a dataclass."""
    env = base_env(tmp_path, {"OTEL_TRACES_EXPORTER": "otel_scope", "OTEL_SCOPE_CONTROL": "false"})
    run = run_tree([CLI, *flags, sys.executable, "-c", _OUR_DATACLASSES], tmp_path, env, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1]) == ["otel_scope.config.settings.Settings"]


def test_the_cli_process_loads_only_the_flag_names_of_otel_scope(tmp_path):
    """The CLI parses its options, then execs the program: the settings model and the SDK
    configurator would be imported there for nothing."""
    env = base_env(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", CLI, "--scope-mode", "off", sys.executable, "-c", "pass"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    loaded = {
        line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")
    }
    assert "otel_scope.config.environment_variables" in loaded
    assert not _below(
        loaded,
        "otel_scope.config.settings",
        "otel_scope.config.patterns",
        "opentelemetry.sdk",
        "otel_scope.pipeline",
    )


def test_writing_spans_to_the_local_store_creates_no_dataclass_of_the_read_side(tmp_path):
    """Every run that records a session writes its root span at exit: the write side builds rows,
    and the read side's dataclasses (the records, the ``sessions`` summary: 0.5 ms each for a
    10-field frozen one) would cost that exit for nothing."""
    written = (
        "import dataclasses, json, sys; from opentelemetry import trace; json.dumps(1); "
        "assert trace.get_tracer_provider().force_flush(); "
        "print(json.dumps(sorted(sys.modules))); "
        "print(json.dumps([name for name, v in vars(sys.modules['otel_scope.store.spanstore']).items() "
        "if isinstance(v, type) and dataclasses.is_dataclass(v)]))"
    )
    env = base_env(tmp_path, {"OTEL_TRACES_EXPORTER": "otel_scope", "OTEL_SCOPE_CONTROL": "false"})
    flags = ["--scope-mode", "runtime", "--scope-targets", "json:dumps"]
    run = run_tree([CLI, *flags, sys.executable, "-c", written], tmp_path, env, timeout=60)
    assert run.returncode == 0, run.stderr
    *_, modules, dataclasses_of_the_store = run.stdout.splitlines()
    loaded = set(json.loads(modules))
    assert "otel_scope.store.spanstore" in loaded  # the traced call was written
    assert not _below(loaded, "otel_scope.store.records")
    assert json.loads(dataclasses_of_the_store) == []
