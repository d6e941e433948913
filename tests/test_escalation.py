"""Escalation: a runtime-traced function that fails (or is slow) gets compile-time locals on its next
calls, then is switched back; budgets keep it from flapping; the settings turn it on and off.

In-process with a real engine, real recompilation and a real SDK pipeline; then end to end under
``opentelemetry-instrument`` with spans over real OTLP.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from otel_scope.bootstrap import escalation_enabled
from otel_scope.config import Settings, parse_pattern
from otel_scope.control.commands import Controller
from otel_scope.engine import Engine
from otel_scope.runtime import escalation, trampoline
from otel_scope.runtime.escalation import Escalator
from otel_scope.targets.planner import Request
from scope_run import run_instrumented, run_plain

APPS = Path(__file__).resolve().parent / "apps"


@pytest.fixture
def apps(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(APPS))
    import failing
    import liveshop

    return liveshop, failing


@pytest.fixture
def escalator(engine: Engine) -> Iterator[Escalator]:
    esc = Escalator(engine, engine.settings)
    engine.add_finish_hook(esc.on_finish)
    yield esc
    esc.close()
    esc.end("test over")


SETTLE_S = 60  # a guard against a hang, not a timed assertion: waiting returns when the worker is done


def target(engine: Engine, pattern: str):
    return engine.add(Request(parse_pattern(pattern)))


def locals_events(span) -> list:
    return [e for e in span.events if e.name == "otel_scope.locals"]


def escalation_events(span) -> list:
    return [e for e in span.events if e.name == "otel_scope.escalation"]


@pytest.mark.parametrize(
    ("settings", "on"),
    [
        (Settings(), True),
        (Settings(escalation="off"), False),
        (Settings(environment="production"), False),
        (Settings(environment="production", escalation="on"), True),
        (Settings(mode="runtime"), False),
        (Settings(mode="runtime", escalation="on"), True),
    ],
    ids=[
        "auto-development",
        "off",
        "auto-production",
        "on-production",
        "auto-runtime-mode",
        "on-runtime-mode",
    ],
)
def test_on_by_default_in_development_off_in_production_unless_asked(settings, on) -> None:
    assert escalation_enabled(settings)[0] is on


def test_a_failure_escalates_the_next_calls_to_compile_time_locals_then_switches_back(
    engine, escalator, memory, apps
) -> None:
    shop, _ = apps
    original = shop.risky.__code__
    target(engine, "liveshop:risky")
    assert shop.risky(1) == 8.0
    with pytest.raises(ZeroDivisionError):
        shop.risky(2)
    assert escalator.wait_idle(SETTLE_S)  # the worker has recompiled it
    results = [shop.risky(n) for n in range(3, 3 + escalation.ESCALATION_CALLS + 2)]
    assert results == [8.0] * len(results)
    spans = memory.named("liveshop.risky")
    assert len(spans) == 2 + len(results)  # one span per call: the locals go on the runtime span
    assert escalation_events(spans[0]) == [] and locals_events(spans[0]) == []
    (event,) = escalation_events(spans[1])
    assert dict(event.attributes) == {
        "otel_scope.escalation.reason": "exception",
        "otel_scope.escalation.calls": escalation.ESCALATION_CALLS,
        "otel_scope.mechanism": "runtime",
    }
    escalated = spans[2 : 2 + escalation.ESCALATION_CALLS]
    assert all(locals_events(s) for s in escalated)
    first = {k: v for e in locals_events(escalated[0]) for k, v in e.attributes.items()}
    assert first["otel_scope.var.values"] == "[3, 6]" and first["otel_scope.var.ratio"] == "2.0"
    assert first["otel_scope.var.api_token"] == "[redacted]"
    assert all(s.attributes["otel_scope.mechanism"] == "runtime" for s in spans)
    after = spans[2 + escalation.ESCALATION_CALLS :]
    assert all(locals_events(s) == [] for s in after)
    assert trampoline.is_trampoline(shop.risky.__code__)  # back to the runtime span alone
    engine.remove_all()
    assert shop.risky.__code__ is original
    (row,) = escalator.rows()
    assert row["state"] == "ended" and row["outcome"] == f"after {escalation.ESCALATION_CALLS} calls"
    assert row["reason"] == "exception" and row["detail"] == "ZeroDivisionError"


class EngineHeld:
    """Another thread holds the engine's lock until :meth:`release`: a recompile (which needs it)
    cannot finish before then, and a call that waited for one would wait for the release."""

    def __init__(self, engine: Engine) -> None:
        self._held, self._release = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._hold, args=(engine,), daemon=True)
        self._thread.start()
        assert self._held.wait(SETTLE_S)

    def _hold(self, engine: Engine) -> None:
        with engine._lock:
            self._held.set()
            self._release.wait(SETTLE_S)  # a guard: a hung test ends, and then fails below

    def release(self) -> None:
        self._release.set()
        self._thread.join(SETTLE_S)


def test_the_failing_call_returns_before_its_recompile_and_later_calls_get_locals_once_ready(
    engine, escalator, memory, apps
) -> None:
    shop, _ = apps
    target(engine, "liveshop:risky")
    held = EngineHeld(engine)
    try:
        with pytest.raises(ZeroDivisionError):
            shop.risky(2)  # raises while the recompile cannot have run: it waits for the lock
        (row,) = escalator.rows()
        assert row["state"] == "queued"
        assert trampoline.is_trampoline(shop.risky.__code__)  # not recompiled yet
        assert shop.risky(3) == 8.0  # meanwhile: a runtime span, no locals yet
    finally:
        held.release()
    assert escalator.wait_idle(SETTLE_S)
    assert shop.risky(4) == 8.0
    failed, meanwhile, ready = memory.named("liveshop.risky")
    assert len(escalation_events(failed)) == 1
    assert locals_events(meanwhile) == []
    values = {k: v for e in locals_events(ready) for k, v in e.attributes.items()}
    assert values["otel_scope.var.ratio"] == "2.0"
    assert escalator.rows()[0]["state"] == "active" and escalator.rows()[0]["seen"] == 1


def _ends_while_the_engine_lock_is_held(engine: Engine, work: Callable[[], object]) -> None:
    """Run ``work`` (an import through the hook) on a thread while another holds the engine's
    lock: it must end without waiting for that lock."""
    engine.compile_time.install_import_hook()
    held = EngineHeld(engine)
    try:
        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        worker.join(5)  # a guard, not a timing: work that waits for the engine's lock never ends
        assert not worker.is_alive(), "it waited for the engine's lock"
    finally:
        held.release()
        worker.join(SETTLE_S)
        engine.compile_time.uninstall_import_hook()


def test_an_import_is_not_held_up_by_a_recompile_holding_the_engine_lock(
    engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The escalation worker recompiles holding the engine's lock, and a recompile imports (the
    first one imports otel-scope's recompiler). Python asks each finder for a spec under its global
    import lock: had the import hook waited there for the engine's lock, each thread would wait for
    the other's lock forever (``django.setup()`` hung so under ``--scope-mode hybrid
    --scope-targets 'django.*'``, and SIGTERM could not end it). Finding a spec waits for no lock."""
    (tmp_path / "lockmod.py").write_text("def f(x):\n    y = x + 1\n    return y\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    engine.add(Request(parse_pattern("lockmod:*"), mode="hybrid"))
    found: list[object] = []
    _ends_while_the_engine_lock_is_held(engine, lambda: found.append(importlib.util.find_spec("lockmod")))
    (spec,) = found
    assert type(spec.loader).__name__ == "ScopeLoader"  # the module will be rewritten, as planned


def test_an_import_does_not_wait_for_the_engine_lock_and_is_applied_when_it_is_let_go(
    engine, memory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An import can run holding a lock of the program's (Django's ``dictConfig`` imports the
    handlers it configures holding ``logging``'s lock) that the escalation worker, recompiling
    under the engine's lock, then needs to log: had the import waited for the engine's lock, both
    threads waited for good. It returns at once, and the lock's holder applies the module."""
    (tmp_path / "heldmod.py").write_text("def f(x):\n    return x + 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    target(engine, "heldmod:*")
    _ends_while_the_engine_lock_is_held(engine, lambda: importlib.import_module("heldmod"))
    import heldmod

    assert trampoline.is_trampoline(heldmod.f.__code__)  # applied as the holder let go
    assert heldmod.f(1) == 2
    assert len(memory.named("heldmod.f")) == 1


def test_closing_drops_the_queued_escalations_unrecompiled_and_counts_them(
    engine, escalator, memory, apps
) -> None:
    shop, failing = apps
    original = failing.outer.__code__
    target(engine, "liveshop:risky")
    target(engine, "failing:outer")
    held = EngineHeld(engine)
    try:
        with pytest.raises(ZeroDivisionError):
            shop.risky(2)
        with pytest.raises(ZeroDivisionError):
            failing.outer(3)  # queued behind risky's recompile, which waits for the lock
        escalator.close()  # as at exit: returns without waiting for the recompile
    finally:
        held.release()
    assert escalator.wait_idle(SETTLE_S)
    rows = {r["function"]: r for r in escalator.rows()}
    assert rows["failing.outer"]["state"] == "dropped"
    assert rows["failing.outer"]["outcome"] == "otel-scope stopped before its recompile"
    assert failing.outer.__code__ is not original and trampoline.is_trampoline(failing.outer.__code__)
    assert escalator.losses()["dropped"] == 1 + (rows["liveshop.risky"]["state"] == "dropped")
    with pytest.raises(ZeroDivisionError):
        shop.risky(2)  # after close nothing more is queued
    assert len(escalator.rows()) == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_escalates_on_a_worker_of_its_own(engine, escalator, memory, apps) -> None:
    shop, failing = apps
    target(engine, "liveshop:risky")
    target(engine, "failing:outer")
    with pytest.raises(ZeroDivisionError):
        shop.risky(2)  # the parent's worker starts here
    assert escalator.wait_idle(SETTLE_S)
    pid = os.fork()
    if pid == 0:  # the child: the parent's worker thread does not exist here
        ok = False
        try:
            escalator.after_fork_in_child()  # what the scope's fork hook calls
            try:
                failing.outer(3)
            except ZeroDivisionError:
                pass
            ok = escalator.wait_idle(SETTLE_S) and escalator.rows()[0]["state"] == "active"
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_one_escalation_per_function_per_cooldown(engine, escalator, memory, apps) -> None:
    shop, _ = apps
    target(engine, "liveshop:risky")
    for _ in range(2):
        with pytest.raises(ZeroDivisionError):
            shop.risky(2)
        assert escalator.wait_idle(SETTLE_S)
        for n in range(3, 3 + escalation.ESCALATION_CALLS):
            shop.risky(n)
    with pytest.raises(ZeroDivisionError):
        shop.risky(2)
    assert sum(len(escalation_events(s)) for s in memory.named("liveshop.risky")) == 1
    assert len(escalator.rows()) == 1


def test_no_more_than_max_active_escalations_at_once(engine, escalator, memory, apps, monkeypatch) -> None:
    shop, failing = apps
    monkeypatch.setattr(escalation, "MAX_ACTIVE", 1)
    target(engine, "liveshop:risky")
    target(engine, "failing:outer")
    with pytest.raises(ZeroDivisionError):
        shop.risky(2)
    with pytest.raises(ZeroDivisionError):
        failing.outer(3)
    assert [r["function"] for r in escalator.rows()] == ["liveshop.risky"]
    assert escalation_events(memory.named("failing.outer")[0]) == []
    assert escalator.losses() == {"dropped": 1, "failed": 0}  # the refused one is counted
    listed = Controller(engine.settings, escalator, engine=lambda: engine).handle({"op": "list"})
    assert listed["escalation_losses"] == {"dropped": 1, "failed": 0}  # what `targets list` prints


def test_a_call_far_slower_than_the_functions_recent_calls_escalates(engine, escalator, memory, apps) -> None:
    _, failing = apps
    original = failing.nap.__code__
    target(engine, "failing:nap")
    for _ in range(32):  # enough history for the 90th percentile
        failing.nap(0)
    failing.nap(0.5)  # far past 3x the p90 even when a loaded machine delays some nap(0) calls
    (event,) = escalation_events(memory.named("failing.nap")[-1])
    assert event.attributes["otel_scope.escalation.reason"] == "slow"
    assert escalator.wait_idle(SETTLE_S)
    assert failing.nap.__code__ is not original  # recompiled for the next calls
    row = escalator.rows()[0]
    assert row["state"] == "active" and row["reason"] == "slow"
    # "500.2 ms (p90 0.1 ms)": at least the 0.5 s slept (a loaded machine only adds to it), and
    # past the threshold it was compared with
    took, p90 = re.fullmatch(r"([0-9.]+) ms \(p90 ([0-9.]+) ms\)", row["detail"]).groups()
    assert float(took) >= 500.0 and float(took) >= escalation.SLOW_FACTOR * float(p90)


def test_control_flow_exceptions_do_not_escalate(engine, escalator, memory, apps) -> None:
    _, failing = apps
    target(engine, "failing:stop")
    target(engine, "failing:exhausted")
    with pytest.raises(SystemExit):
        failing.stop(0)
    with pytest.raises(StopIteration):
        failing.exhausted([])
    assert escalator.rows() == []


def test_a_generated_function_that_cannot_escalate_is_counted_as_failed_and_not_warned_about(
    engine, escalator, memory, monkeypatch, caplog
) -> None:
    """attrs runs a validator inside the ``__init__`` it generates (no source of its own): the
    failure escalates both, and the ``__init__``'s recompile is refused. The user named neither,
    so that is escalation's own failure (counted, in ``targets list``), not a WARNING line."""
    monkeypatch.syspath_prepend(str(APPS))
    import attrs_shapes

    target(engine, "attrs_shapes:*")
    with caplog.at_level(logging.DEBUG, logger="otel_scope"), pytest.raises(ValueError, match="over 100"):
        attrs_shapes.Bounded(101)
    assert escalator.wait_idle(SETTLE_S)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    rows = {r["function"]: r for r in escalator.rows()}
    assert rows["attrs_shapes.Bounded.__init__"]["state"] == "failed"
    assert "not found in the current source" in rows["attrs_shapes.Bounded.__init__"]["outcome"]
    assert rows["attrs_shapes.Bounded._at_most_100"]["state"] == "active"
    assert escalator.losses()["failed"] == 1
    assert attrs_shapes.Bounded(7).value == 7


def test_removing_the_runtime_target_ends_its_escalation_and_restores_the_code(
    engine, escalator, memory, apps
) -> None:
    shop, _ = apps
    original = shop.risky.__code__
    controller = Controller(engine.settings, escalator, engine=lambda: engine)
    assert controller.handle({"op": "add", "patterns": ["liveshop:risky"]})["ok"]
    with pytest.raises(ZeroDivisionError):
        shop.risky(2)
    assert escalator.wait_idle(SETTLE_S)
    assert shop.risky.__code__ is not original  # escalated: recompiled
    listed = controller.handle({"op": "list"})
    assert listed["escalations"][0]["state"] == "active"
    assert {t["source"] for t in listed["targets"]} == {"control", "escalation"}
    assert controller.handle({"op": "remove", "patterns": ["liveshop:risky"]})["ok"]
    assert shop.risky.__code__ is original and engine.entries() == []
    assert escalator.rows()[0]["outcome"] == "its target was removed"


# -- end to end ----------------------------------------------------------------------------------------
def test_a_traced_function_fails_once_and_its_next_call_carries_compile_time_locals(
    otlp_receiver, tmp_path: Path
) -> None:
    plain = run_plain("app_escalate.py", tmp_path)
    # The app waits for the recompile before its third call (locals come once it is ready).
    wait = {"APP_WAIT_FOR_ESCALATION": "1"}
    traced = run_instrumented(
        "app_escalate.py",
        ["--scope-targets", "liveshop:risky"],
        {**otlp_receiver.env("grpc"), **wait},
        tmp_path,
    )
    assert (traced.returncode, traced.stdout) == (plain.returncode, plain.stdout) == (0, plain.stdout)
    assert traced.stderr_without_session_line == plain.stderr == ""
    spans = otlp_receiver.wait_for(lambda s: len([x for x in s if x.name == "liveshop.risky"]) == 4)
    calls = sorted((x for x in spans if x.name == "liveshop.risky"), key=lambda x: x.start_time_ns)
    one, two, three, four = calls
    assert two.status_code == "ERROR"
    frame = two.events_named("otel_scope.exception.frame")[0].attributes
    assert frame["otel_scope.var.divisor"] == "0" and frame["otel_scope.var.api_token"] == "[redacted]"
    (event,) = two.events_named("otel_scope.escalation")
    assert event.attributes["otel_scope.escalation.reason"] == "exception"
    assert event.attributes["otel_scope.escalation.calls"] == escalation.ESCALATION_CALLS
    for later in (three, four):
        assert later.attributes["otel_scope.mechanism"] == "runtime"
        values = {k: v for e in later.events_named("otel_scope.locals") for k, v in e.attributes.items()}
        assert values["otel_scope.var.ratio"] == "2.0"
        assert values["otel_scope.mechanism"] == "compile_time"
    assert one.events_named("otel_scope.locals") == []


@pytest.mark.parametrize(
    "env",
    [{"OTEL_SCOPE_ESCALATION": "off"}, {"OTEL_SCOPE_ENVIRONMENT": "production"}],
    ids=["off", "production"],
)
def test_no_escalation_and_no_exception_frames_when_turned_off_or_in_production(
    otlp_receiver, tmp_path: Path, env
) -> None:
    traced = run_instrumented(
        "app_escalate.py",
        ["--scope-targets", "liveshop:risky"],
        {**otlp_receiver.env("grpc"), **env},
        tmp_path,
    )
    assert traced.returncode == 0
    spans = otlp_receiver.wait_for(lambda s: len([x for x in s if x.name == "liveshop.risky"]) == 4)
    names = {e.name for x in spans for e in x.events}
    assert names == {"exception"}


def test_a_program_ending_while_escalations_are_queued_exits_normally(tmp_path: Path) -> None:
    """Four functions of a few thousand lines fail just before the program ends: the worker was
    still recompiling (libcst's native parser) as the interpreter finalized, which stops a
    daemon thread where it stands, in Rust code, and the process died of SIGABRT after a normal
    run (seven exits in eight). Closing the escalations before the session ends, and waiting for
    the recompile in flight, lets it end as it would without otel-scope."""
    lines = []
    for k in range(4):
        lines += [
            f"def fails{k}(x):",
            *(f"    y{i} = x + {i}" for i in range(2000)),
            "    raise ValueError(x)",
        ]
    (tmp_path / "longfns.py").write_text("\n".join(lines) + "\n")
    (tmp_path / "ends_soon.py").write_text(
        "import sys, time\nimport longfns\n"
        "for k in range(4):\n"
        "    try:\n        getattr(longfns, f'fails{k}')(1)\n    except ValueError:\n        pass\n"
        "time.sleep(float(sys.argv[1]))\nprint('done')\n"
    )
    flags = ["--scope-mode", "hybrid", "--scope-targets", "longfns:*", "--scope-escalation", "on"]
    for delay in ("0", "0.2", "0.8"):
        run = run_instrumented("ends_soon.py", flags, {}, tmp_path, cwd=tmp_path, argv=[delay])
        assert (run.returncode, run.stdout) == (0, "done\n"), run.stderr
        assert "Fatal Python error" not in run.stderr
