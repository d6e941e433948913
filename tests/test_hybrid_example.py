"""Hybrid mode on the example shop: one trace, both mechanisms tagged, one span per call, and the
bug's cause visible in ``otel-scope history --last`` from the embedded local store."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from scope_run import BIN, base_env, run_instrumented, run_plain

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_hybrid_run_is_one_trace_with_both_mechanisms_and_no_duplicate_spans(
    otlp_receiver, tmp_path: Path
) -> None:
    plain = run_plain("app.py", tmp_path, cwd=EXAMPLES)
    run = run_instrumented(
        "app.py", ["--scope-mode", "hybrid"], otlp_receiver.env("grpc"), tmp_path, cwd=EXAMPLES
    )
    assert (run.returncode, run.stdout) == (plain.returncode, plain.stdout)
    spans = otlp_receiver.wait_for(
        lambda s: (
            sum(x.name == "shop.inventory.InventoryChecker.check_stock" for x in s) == 4
            and any(x.name == "otel_scope.session" for x in s)
        )
    )
    assert {s.trace_id for s in spans} == {run.session_trace_id}
    mechanisms = Counter(s.attributes.get("otel_scope.mechanism") for s in spans)
    assert mechanisms["runtime"] > 0
    events = [e for s in spans for e in s.events if e.name.startswith("otel_scope.")]
    assert {e.attributes["otel_scope.mechanism"] for e in events if e.name == "otel_scope.locals"} == {
        "compile_time"
    }
    assert all(e.attributes["otel_scope.session.id"] == run.session_trace_id for e in events)
    # check_stock is both a runtime target (state) and a compile-time one: still one span per call
    checks = [s for s in spans if s.name == "shop.inventory.InventoryChecker.check_stock"]
    assert len(checks) == 4
    calls = Counter((s.parent_span_id, s.attributes.get("otel_scope.arg.order")) for s in checks)
    assert max(calls.values()) == 1
    first = min(checks, key=lambda s: s.start_time_ns)
    assigned = {
        name[len("otel_scope.var.") :]: value
        for e in first.events_named("otel_scope.locals")
        for name, value in e.attributes.items()
        if name.startswith("otel_scope.var.") and not name.endswith(".type")
    }
    assert assigned["reserved"] == "1"  # the bug: order 1 wanted 3 widgets
    lines = {e.attributes["code.line.number"] for e in first.events_named("otel_scope.locals")}
    source = (EXAMPLES / "shop" / "inventory.py").read_text().splitlines()
    reserved_line = next(i for i, text in enumerate(source, 1) if "reserved = already_reserved + 1" in text)
    assert reserved_line in lines  # exact original line numbers


def test_history_last_shows_the_bugs_variable_from_the_local_store(tmp_path: Path) -> None:
    run = run_instrumented("app.py", ["--scope-mode", "hybrid"], {}, tmp_path, cwd=EXAMPLES)
    assert run.returncode == 0, run.stderr
    assert run.session_trace_id and "otel-scope history" in run.stderr
    history = subprocess.run(
        [str(BIN / "otel-scope"), "history", "--last"],
        env=base_env(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert run.session_trace_id in history
    assert "[COMPILE]" in history and "[RUNTIME]" in history
    assert "VAR reserved = 1" in history
    assert "CALL shop.inventory.InventoryChecker.check_stock" in history
    assert "\x1b[" not in history  # piped: no escape codes


def test_demo_command_shows_the_timeline_and_ends_pointing_to_the_view(tmp_path: Path) -> None:
    page = tmp_path / "shop-trace.html"
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "run_demo.py"), "--html", str(page)],
        env=base_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "VAR reserved = 1" in result.stdout
    before_view = result.stdout.split("$ otel-scope view", 1)[0]
    assert before_view.rstrip().splitlines()[-1].lstrip().split()[1] == "[OTEL]"  # END SESSION
    last_lines = result.stdout.rstrip().splitlines()[-3:]
    assert f"open {page}" in last_lines[0] and last_lines[1].strip().endswith("otel-scope view --last")
    assert 'id="otel-scope-data"' in page.read_text()
