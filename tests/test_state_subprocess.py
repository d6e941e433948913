"""State capture end to end: ``--scope-state`` on a real program under ``opentelemetry-instrument``,
received over real OTLP. Each call records exactly the attributes it changed, before and after,
and reading the object never runs its code."""

from __future__ import annotations

from pathlib import Path

import pytest

from otlp_receiver import ReceivedSpan
from scope_run import run_instrumented, run_plain

UNSET = "<unset>"


def _state_changes(span: ReceivedSpan) -> dict[str, tuple[str, str]]:
    changes = {}
    for event in span.events_named("otel_scope.state"):
        a = event.attributes
        assert a["otel_scope.mechanism"] == "runtime"
        assert a["otel_scope.session.id"] == span.trace_id
        changes[a["otel_scope.state.attribute"]] = (a["otel_scope.state.before"], a["otel_scope.state.after"])
    return changes


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_each_call_records_exactly_the_attributes_it_changed(
    otlp_receiver, tmp_path: Path, protocol: str
) -> None:
    plain = run_plain("app_state.py", tmp_path)
    traced = run_instrumented(
        "app_state.py", ["--scope-state", "state_work:*"], otlp_receiver.env(protocol), tmp_path
    )
    # Same output, including the app's own record that no property/__getattr__/__repr__ ran.
    assert (traced.returncode, traced.stdout) == (plain.returncode, plain.stdout)
    assert "user code ran []" in traced.stdout
    assert traced.stderr_without_session_line == plain.stderr
    spans = otlp_receiver.wait_for(lambda s: any(x.name == "state_work.Counter.incr" for x in s))
    by_name = {s.name.removeprefix("state_work."): s for s in spans}

    assert _state_changes(by_name["Inventory.__init__"]) == {
        "stock": (UNSET, "{'apple': 5}"),
        "reserved": (UNSET, "{}"),
        "count": (UNSET, "0"),
        "label": (UNSET, "'main'"),
        "password": ("[redacted]", "[redacted]"),
    }
    # A dict mutated in place and an int replaced; untouched attributes are not mentioned.
    assert _state_changes(by_name["Inventory.reserve"]) == {
        "reserved": ("{}", "{'apple': 2}"),
        "count": ("0", "1"),
    }
    assert _state_changes(by_name["Inventory.rename"]) == {"label": ("'main'", "'side'")}
    assert _state_changes(by_name["Inventory.peek"]) == {}
    assert by_name["Inventory.peek"].events_named("otel_scope.state") == []
    assert _state_changes(by_name["Inventory.rotate_password"]) == {"password": ("[redacted]", "[redacted]")}
    failed = by_name["Inventory.fail"]
    assert _state_changes(failed) == {"count": ("1", "2")}  # recorded also when the call raises
    assert failed.status_code == "ERROR"
    assert _state_changes(by_name["Inventory.add_and_drop"]) == {
        "extra": (UNSET, "1"),
        "label": ("'side'", UNSET),
    }
    assert _state_changes(by_name["Slotted.push"]) == {"items": ("[]", "[3]"), "x": ("1", "2")}
    assert _state_changes(by_name["Counter.incr"]) == {"n": ("0", "1")}  # async method


def test_without_state_patterns_the_same_spans_carry_no_state_events(otlp_receiver, tmp_path: Path) -> None:
    traced = run_instrumented(
        "app_state.py", ["--scope-targets", "state_work:*"], otlp_receiver.env("grpc"), tmp_path
    )
    assert traced.returncode == 0
    spans = otlp_receiver.wait_for(lambda s: any(x.name == "state_work.Counter.incr" for x in s))
    assert any(s.name == "state_work.Inventory.reserve" for s in spans)
    assert not [e for s in spans for e in s.events_named("otel_scope.state")]
