"""Sessions: one trace per run whatever the way out, and the request/explicit kinds."""

from __future__ import annotations

from pathlib import Path

import pytest

from scope_run import run_instrumented

FLAGS = ["--scope-mode", "runtime", "--scope-targets", "svc.orders:*"]


@pytest.mark.parametrize(
    ("how", "returncode", "exit_attr"),
    [
        ("normal", 0, "normal"),
        ("exception", 1, "exception"),
        ("sys.exit", 3, "normal"),
        ("sigterm", -15, "signal SIGTERM"),
    ],
)
def test_session_root_ends_and_is_exported_however_the_program_exits(
    otlp_receiver, tmp_path: Path, how: str, returncode: int, exit_attr: str
) -> None:
    run = run_instrumented("app_exit.py", FLAGS, otlp_receiver.env("http"), tmp_path, argv=[how])
    assert run.returncode == returncode, run.stderr
    spans = otlp_receiver.wait_for(lambda s: any(x.name == "otel_scope.session" for x in s))
    (root,) = [s for s in spans if s.name == "otel_scope.session"]
    assert root.attributes["otel_scope.session.exit"] == exit_attr
    assert root.attributes["otel_scope.session.kind"] == "process"
    assert root.parent_span_id == ""
    calls = otlp_receiver.wait_for(lambda s: any(x.name == "svc.orders.validate" for x in s))
    assert {s.trace_id for s in calls} == {root.trace_id}
    assert run.session_trace_id == root.trace_id
    if how == "exception":
        assert root.status_code == "ERROR"
        assert "Traceback" in run.stderr and "ValueError: order 2 is empty" in run.stderr  # user's own


def test_explicit_session_records_only_inside_the_with_block(otlp_receiver, tmp_path: Path) -> None:
    run = run_instrumented(
        "app_exit.py",
        [*FLAGS, "--scope-session", "explicit"],
        otlp_receiver.env("grpc"),
        tmp_path,
        argv=["explicit"],
    )
    assert run.returncode == 0, run.stderr
    trace_id = run.stdout.split()[-1]
    spans = otlp_receiver.wait_for(lambda s: any(x.name == "svc.orders.validate" for x in s))
    validates = [s for s in spans if s.name == "svc.orders.validate"]
    assert len(validates) == 1 and validates[0].trace_id == trace_id
    (root,) = [s for s in spans if s.name == "otel_scope.session"]
    assert root.attributes["otel_scope.session.name"] == "checkout-bug" and root.trace_id == trace_id
    assert run.session_trace_id is None  # no process session, no closing line


def test_request_sessions_keep_request_spans_as_roots(otlp_receiver, tmp_path: Path) -> None:
    run = run_instrumented(
        "app_exit.py",
        [*FLAGS, "--scope-session", "request"],
        otlp_receiver.env("grpc"),
        tmp_path,
        argv=["request"],
    )
    assert run.returncode == 0, run.stderr
    spans = otlp_receiver.wait_for(lambda s: sum(x.name == "svc.orders.validate" for x in s) == 2)
    requests = {s.span_id: s for s in spans if s.name.startswith("GET ")}
    assert all(r.parent_span_id == "" for r in requests.values())
    for call in (s for s in spans if s.name == "svc.orders.validate"):
        assert call.parent_span_id in requests
        assert call.attributes["otel_scope.session.id"] == call.trace_id
    assert len({s.trace_id for s in requests.values()}) == 2  # one trace per request
    assert not any(s.name == "otel_scope.session" for s in spans)


def test_calling_sys_excepthook_prints_what_python_prints_and_the_session_line_comes_only_at_exit(
    otlp_receiver, tmp_path: Path
) -> None:
    from scope_run import run_plain

    notes = tmp_path / "notes.txt"
    run = run_instrumented("app_excepthook.py", FLAGS, otlp_receiver.env("http"), tmp_path, argv=[str(notes)])
    plain = run_plain("app_excepthook.py", tmp_path, argv=[str(notes)])
    assert run.returncode == plain.returncode == 1
    assert run.stderr_without_session_line == plain.stderr  # byte for byte, manual hook call included
    lines = run.stderr.splitlines()
    assert sum(line.startswith("otel-scope: session ") for line in lines) == 1
    assert lines[-1].startswith("otel-scope: session ")  # after the traceback: at exit only
    spans = otlp_receiver.wait_for(lambda s: any(x.name == "otel_scope.session" for x in s))
    (root,) = [s for s in spans if s.name == "otel_scope.session"]
    assert root.attributes["otel_scope.session.exit"] == "exception" and root.status_code == "ERROR"
    (event,) = root.events_named("exception")
    assert event.attributes["exception.type"].endswith("Loud")
    assert event.attributes["exception.message"] == "x"  # from args, not the user's __str__
    assert not notes.exists() or "otel-scope called" not in notes.read_text()
