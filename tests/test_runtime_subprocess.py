"""Runtime mode end to end: ``opentelemetry-instrument --scope-mode runtime`` on a real program,
spans received over real OTLP (gRPC and HTTP) on 127.0.0.1, output identical to an untraced run."""

from __future__ import annotations

from pathlib import Path

import pytest

from scope_run import run_instrumented, run_plain

TARGETS = "svc.orders:*"


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize(
    "flags",
    [
        ["--scope-mode", "runtime", "--scope-targets", TARGETS],
        ["--scope_mode", "runtime", "--scope_targets", TARGETS],
        ["--scope-mode=runtime", f"--scope-targets={TARGETS}"],
    ],
    ids=["dash", "underscore", "equals"],
)
def test_runtime_spans_arrive_over_otlp_and_the_program_is_unchanged(
    otlp_receiver, tmp_path: Path, protocol: str, flags: list[str]
) -> None:
    plain = run_plain("app_runtime.py", tmp_path)
    traced = run_instrumented("app_runtime.py", flags, otlp_receiver.env(protocol), tmp_path)
    assert (traced.returncode, traced.stdout) == (plain.returncode, plain.stdout) == (3, plain.stdout)
    assert traced.stderr_without_session_line == plain.stderr
    spans = otlp_receiver.wait_for(
        lambda s: {"svc.orders.in_thread", "svc.orders.batches", "svc.orders.ship"} <= {x.name for x in s}
    )
    by_name: dict[str, list] = {}
    for s in spans:
        by_name.setdefault(s.name, []).append(s)
    total = by_name["svc.orders.Order.total"]
    assert len(total) == 2  # once in main, once inside the thread
    first = total[0].attributes
    assert first["code.function.name"] == "svc.orders.Order.total"
    assert first["code.file.path"].endswith("svc/orders.py")
    assert isinstance(first["code.line.number"], int)
    assert first["otel_scope.mechanism"] == "runtime"
    assert first["otel_scope.return"] == "33.0"
    assert "svc.orders.Order.size" not in by_name  # a property is left alone
    (empty_validate,) = [s for s in by_name["svc.orders.validate"] if s.status_code == "ERROR"]
    assert empty_validate.events_named("exception")[0].attributes["exception.type"] == "ValueError"
    assert by_name["svc.orders.batches"][0].attributes["otel_scope.yield.count"] == 3
    assert by_name["svc.orders.ship"][0].attributes["otel_scope.return"] == "'shipped 1'"
    assert len(by_name["svc.orders.Order.empty"]) == 2 and len(by_name["svc.orders.Order.currency"]) == 1
    # one session: every span (the thread's too) shares the trace ID printed at exit
    assert traced.session_trace_id is not None
    assert {s.trace_id for s in spans} == {traced.session_trace_id}
    # nesting follows the work into the thread: total() there is a child of in_thread()
    thread_total = [s for s in total if s.parent_span_id == by_name["svc.orders.in_thread"][0].span_id]
    assert len(thread_total) == 1


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--scope-mode", "hybird"], "OTEL_SCOPE_MODE"),
        (["--scope-targets", "svc orders"], "OTEL_SCOPE_TARGETS"),
        (["--scope-level", "everything"], "OTEL_SCOPE_LEVEL"),
        (["--scope-session", "thread"], "OTEL_SCOPE_SESSION"),
        (["--scope-max-depth", "deep"], "OTEL_SCOPE_MAX_DEPTH"),
    ],
)
def test_bad_setting_prints_one_line_and_the_program_runs_unchanged(
    otlp_receiver, tmp_path: Path, flags: list[str], named: str
) -> None:
    plain = run_plain("app_runtime.py", tmp_path)
    traced = run_instrumented("app_runtime.py", flags, otlp_receiver.env("grpc"), tmp_path)
    assert (traced.returncode, traced.stdout) == (plain.returncode, plain.stdout)
    extra = [line for line in traced.stderr.splitlines() if line not in plain.stderr.splitlines()]
    assert len(extra) == 1, traced.stderr
    assert extra[0].startswith("otel-scope: ") and named in extra[0] and "accepted" in extra[0]
    assert "Traceback" not in traced.stderr


def test_unknown_exporter_name_is_one_line_and_spans_still_flow(otlp_receiver, tmp_path: Path) -> None:
    env = {**otlp_receiver.env("grpc"), "OTEL_TRACES_EXPORTER": "otlp,jaegerx"}
    traced = run_instrumented("app_runtime.py", ["--scope-targets", TARGETS], env, tmp_path)
    assert traced.returncode == 3
    lines = [line for line in traced.stderr.splitlines() if "jaegerx" in line]
    assert len(lines) == 1 and "accepted" in lines[0]
    assert "Traceback" not in traced.stderr
    otlp_receiver.wait_for(lambda s: any(x.name == "svc.orders.validate" for x in s))


def test_collector_down_gives_one_line_and_does_not_delay_exit(tmp_path: Path) -> None:
    import socket
    import time

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
    }
    plain = run_plain("app_runtime.py", tmp_path)
    started = time.monotonic()
    run_instrumented(
        "app_runtime.py", ["--scope-targets", TARGETS], {"OTEL_TRACES_EXPORTER": "none"}, tmp_path
    )
    baseline = time.monotonic() - started  # the same run, with nothing to export to
    started = time.monotonic()
    traced = run_instrumented("app_runtime.py", ["--scope-targets", TARGETS], env, tmp_path)
    elapsed = time.monotonic() - started - baseline
    assert (traced.returncode, traced.stdout) == (plain.returncode, plain.stdout)
    extra = [line for line in traced.stderr_without_session_line.splitlines() if line not in plain.stderr]
    # One line when export first fails, one at exit counting what was lost (and where).
    assert len(extra) == 2 and "could not export" in extra[0], traced.stderr
    assert "span(s) not exported (OTLP 127.0.0.1:" in extra[1] and "export failed" in extra[1]
    assert elapsed < 3, elapsed  # the dead collector costs the exit at most a couple of seconds


@pytest.mark.parametrize("spelling", ["app_runtime:main", "__main__:main"])
def test_targets_in_the_script_being_run_work_under_both_spellings(
    otlp_receiver, tmp_path: Path, spelling: str
) -> None:
    plain = run_plain("app_runtime.py", tmp_path)
    flags = ["--scope-mode", "runtime", "--scope-targets", f"{spelling},svc.orders:validate"]
    traced = run_instrumented("app_runtime.py", flags, otlp_receiver.env("http"), tmp_path)
    assert (traced.returncode, traced.stdout) == (plain.returncode, plain.stdout)
    assert traced.stderr_without_session_line == plain.stderr  # no word about the script's target
    spans = otlp_receiver.wait_for(lambda s: any(x.name == "__main__.main" for x in s))
    (main,) = [s for s in spans if s.name == "__main__.main"]
    assert main.attributes["otel_scope.return"] == "3"
    assert main.attributes["code.file.path"].endswith("app_runtime.py")
    validates = otlp_receiver.wait_for(lambda s: sum(x.name == "svc.orders.validate" for x in s) >= 3)
    inside = [s for s in validates if s.name == "svc.orders.validate"]
    assert sum(s.parent_span_id == main.span_id for s in inside) >= 2  # main's calls nest in it


def test_patterns_that_selected_nothing_are_named_once_at_exit_with_the_nearest_names(
    otlp_receiver, tmp_path: Path
) -> None:
    plain = run_plain("app_runtime.py", tmp_path)
    flags = ["--scope-mode", "runtime", "--scope-targets", "svc.orders:validat,nosuch.mod:f,svc.orders:total"]
    traced = run_instrumented("app_runtime.py", flags, otlp_receiver.env("http"), tmp_path)
    assert (traced.returncode, traced.stdout) == (plain.returncode, plain.stdout)
    ours = [line for line in traced.stderr.splitlines() if line.startswith("otel-scope: ")]
    assert ours[:3] == [
        "otel-scope: nosuch.mod:f selected nothing: module nosuch.mod was never imported",
        "otel-scope: svc.orders:total selected nothing: svc.orders has no 'total' (nearest: Order.total)",
        "otel-scope: svc.orders:validat selected nothing: svc.orders has no 'validat' (nearest: validate)",
    ]
    assert ours[3].startswith("otel-scope: session ") and len(ours) == 4


def test_a_package_wildcard_whose_package_was_never_imported_says_so(runtime_engine) -> None:
    from otel_scope.config import parse_pattern
    from otel_scope.targets.planner import Request

    runtime_engine.add(Request(parse_pattern("nosuchpkg.*"), capture_locals=False))
    runtime_engine.add(Request(parse_pattern("json.*"), capture_locals=False))  # loaded: selects
    assert runtime_engine.unmatched() == ["nosuchpkg.* selected nothing: module nosuchpkg was never imported"]


def test_the_python_api_under_plain_python_says_in_one_line_that_nothing_records(tmp_path: Path) -> None:
    import subprocess
    import sys

    from scope_run import base_env

    program = (
        "import json, otel_scope\n"
        "handle = otel_scope.trace('json:dumps')\n"
        "otel_scope.trace('json:loads')\n"
        "print(json.dumps([1]), handle.active)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], env=base_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert done.stdout == "[1] True\n"
    assert done.stderr.splitlines() == [
        "otel-scope: no OpenTelemetry SDK is set up in this process, so nothing records: run under "
        "opentelemetry-instrument, or call opentelemetry.trace.set_tracer_provider(TracerProvider(...))"
    ]


@pytest.mark.parametrize("mode", ["runtime", "compile_time", "hybrid"])
def test_a_mode_with_no_targets_says_so_at_start_and_how_to_set_them(tmp_path: Path, mode: str) -> None:
    plain = run_plain("app_runtime.py", tmp_path)
    env = {"OTEL_TRACES_EXPORTER": "none", "OTEL_SCOPE_CONTROL": "false"}
    traced = run_instrumented("app_runtime.py", ["--scope-mode", mode], env, tmp_path)
    assert (traced.returncode, traced.stdout) == (plain.returncode, plain.stdout)
    ours = [line for line in traced.stderr.splitlines() if line.startswith("otel-scope: ")]
    assert ours[0] == (
        f"otel-scope: --scope-mode {mode} but no targets are set, so otel-scope traces no function of "
        "this program: name some with --scope-targets (or --scope-locals, --scope-state), "
        "OTEL_SCOPE_TARGETS, or targets in [tool.otel-scope] of pyproject.toml, e.g. "
        "--scope-targets 'myapp.*'"
    )
    assert ours[1].startswith("otel-scope: session ") and len(ours) == 2


def test_the_default_mode_with_no_targets_adds_no_line(tmp_path: Path) -> None:
    """otel-scope next to other instrumentations, with only its session root, is a normal run."""
    plain = run_plain("app_runtime.py", tmp_path)
    traced = run_instrumented("app_runtime.py", [], {"OTEL_TRACES_EXPORTER": "none"}, tmp_path)
    assert traced.stderr_without_session_line == plain.stderr


def test_a_traced_function_called_by_a_finalizer_at_interpreter_exit_runs_as_untraced(
    tmp_path: Path,
) -> None:
    """A trampoline read its probe from a module global, which Python sets to None at exit while
    finalizers still run: every multiprocessing Connection closed then printed 'Exception ignored
    in ... __del__: TypeError: 'NoneType' object is not subscriptable' under 'multiprocessing.*'."""
    plain = run_plain("app_pool_exit.py", tmp_path)
    flags = ["--scope-mode", "runtime", "--scope-targets", "multiprocessing.*"]
    traced = run_instrumented("app_pool_exit.py", flags, {"OTEL_SCOPE_CALL_SAMPLING": "true"}, tmp_path)
    assert (traced.returncode, traced.stdout) == (plain.returncode, plain.stdout) == (0, "32\n")
    assert traced.stderr_without_session_line == plain.stderr == ""


def test_a_traced_method_a_finalizer_calls_late_at_exit_does_its_work_and_raises_nothing(
    tmp_path: Path,
) -> None:
    """Late at exit the API's provider global is None and sys.modules is emptied: the span core
    imported the SDK's TracerProvider to look at the new provider, and that import raised
    'ImportError: sys.meta_path is None' into the finalizer, whose work was then not done."""
    log = tmp_path / "closed.txt"
    flags = ["--scope-mode", "runtime", "--scope-targets", "exitwork:Resource.close"]
    traced = run_instrumented("app_finalizer_exit.py", flags, {}, tmp_path, argv=[str(log)])
    assert (traced.returncode, traced.stdout, traced.stderr_without_session_line) == (0, "running\n", "")
    assert log.read_text() == "closed db\n"
