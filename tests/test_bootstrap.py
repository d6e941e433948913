"""One bootstrap for the distro, the Python API and the tests: the same features whoever starts."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from otel_scope.bootstrap import (
    ContextPropagation,
    FailureDetail,
    ImportHook,
    MessageCapture,
    Scope,
    bootstrap,
)
from otel_scope.config import Settings
from otel_scope.engine import Engine
from otel_scope.runtime import messages, propagation
from scope_run import base_env, run_tree

# A plain program (no opentelemetry-instrument) that uses only the Python API: an SDK provider of
# its own, a target on a module it imports afterwards, and a call of that module that raises.
PLAIN_PROGRAM = """
import json, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

memory = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(memory))
trace.set_tracer_provider(provider)

import otel_scope
otel_scope.trace("latermod:*")
assert "latermod" not in sys.modules
import latermod

print(latermod.total([1, 2, 3]))
try:
    latermod.average([])
except ZeroDivisionError:
    pass
print(json.dumps([
    {"name": s.name, "events": [e.name for e in s.events], "status": s.status.status_code.name}
    for s in memory.get_finished_spans()
]))
"""

LATER_MODULE = """
def total(values):
    return sum(values)


def average(values):
    count = len(values)
    return total(values) / count
"""


def test_the_python_api_in_a_plain_program_gets_the_import_hook_and_exception_frames(tmp_path: Path) -> None:
    (tmp_path / "latermod.py").write_text(textwrap.dedent(LATER_MODULE))
    (tmp_path / "plain.py").write_text(textwrap.dedent(PLAIN_PROGRAM))
    env = base_env(tmp_path, {"OTEL_SCOPE_MODE": "hybrid"})
    run = run_tree([sys.executable, "plain.py"], tmp_path, env, 60)
    assert run.returncode == 0, run.stderr
    first, spans_json = run.stdout.splitlines()
    assert first == "6"
    spans = json.loads(spans_json)
    names = [s["name"] for s in spans]
    # Applied when the module was imported, after the target was added (the import hook).
    assert "latermod.total" in names and "latermod.average" in names, names
    (failed,) = [s for s in spans if s["name"] == "latermod.average"]
    assert failed["status"] == "ERROR"
    # Exception frames, as under the distro: the locals of the failing frame.
    assert "otel_scope.exception.frame" in failed["events"], failed


class _Recording:
    def __init__(self, name: str, log: list[str], fail: bool = False) -> None:
        self.name, self._log, self._fail = name, log, fail

    def install(self, scope: Scope) -> None:
        if self._fail:
            raise OSError("address in use")
        self._log.append(f"install {self.name}")

    def uninstall(self) -> None:
        self._log.append(f"uninstall {self.name}")


def test_a_feature_that_cannot_install_costs_one_line_and_the_others_install() -> None:
    scope = Scope(Settings(mode="runtime"), Engine(Settings(mode="runtime")))
    log: list[str] = []
    lines: list[str] = []
    assert scope.add(_Recording("first", log), lines.append) is not None
    assert scope.add(_Recording("broken", log, fail=True), lines.append) is None
    assert scope.add(_Recording("last", log), lines.append) is not None
    assert lines == ["no broken for this process (OSError: address in use); the program is not affected."]
    scope.close()
    assert log == ["install first", "install last", "uninstall last", "uninstall first"]
    scope.close()  # idempotent
    assert len(log) == 4


def test_bootstrap_installs_the_core_features_the_settings_ask_for_and_close_removes_them() -> None:
    scope = bootstrap(Settings(mode="hybrid", messages=True, escalation="on"))
    try:
        kinds = [type(f) for f in scope.features]
        assert kinds == [ImportHook, ContextPropagation, MessageCapture, FailureDetail]
        assert propagation.handoff_hook is messages.handoff
        failure = scope.feature(FailureDetail)
        assert failure is not None and failure.escalator is not None
        assert scope.engine._finish_hooks == tuple(failure._hooks)
    finally:
        scope.close()
    assert propagation.handoff_hook is None
    assert scope.engine._finish_hooks == ()


@pytest.mark.parametrize(
    ("settings", "why"),
    [
        (Settings(mode="runtime"), "auto with mode runtime: off (set escalation=on to enable it)"),
        (Settings(mode="hybrid", escalation="off"), "escalation is off"),
    ],
)
def test_without_escalation_no_finish_hook_is_added_and_the_reason_is_kept(
    settings: Settings, why: str
) -> None:
    scope = bootstrap(settings.replace(messages=False))
    try:
        failure = scope.feature(FailureDetail)
        assert failure is not None and failure.escalator is None and failure.why == why
        assert scope.engine._finish_hooks == ()
        assert scope.feature(MessageCapture) is None
    finally:
        scope.close()
