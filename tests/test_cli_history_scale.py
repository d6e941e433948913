"""``otel-scope history`` on a real trace of thousands of calls, recorded from a subprocess: the
summary, folded repeats, ``--where``, orphan marking, narrowing options and the pager."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

import pytest

from scope_run import run_instrumented
from test_cli_support import OTEL_SCOPE, run_cli

CHECK = "orderflow.Environment.check_stock"
FLAGS = ["--scope-targets", "orderflow:*", "--scope-locals", "orderflow:Environment.check_stock"]
PREFIX = 23  # offset and mechanism tag before each timeline line


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The store of one run of apps/app_orderflow.py, and its trace ID."""
    tmp_path = tmp_path_factory.mktemp("orderflow")
    run = run_instrumented(
        "app_orderflow.py", FLAGS, {"OTEL_TRACES_EXPORTER": "otel_scope"}, tmp_path, timeout=180
    )
    assert run.returncode == 0 and run.stdout == "failed 3\n", run.stderr
    assert run.session_trace_id
    return tmp_path / "store.sqlite3", run.session_trace_id


def _history(recorded: tuple[Path, str], *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    store, trace_id = recorded
    result = run_cli("history", trace_id, *args, cwd=store.parent, store=store, **env)
    assert result.returncode == 0, result.stderr
    return result


def _timeline(stdout: str) -> list[str]:
    return [line[PREFIX:] for line in stdout.splitlines() if line.lstrip().startswith("+")]


def test_a_big_trace_starts_with_time_per_function_the_slowest_calls_and_the_exceptions(
    recorded: tuple[Path, str],
) -> None:
    out = _history(recorded).stdout
    header, _, rest = out.partition("\n\n")
    summary, _, timeline = rest.partition("\n\n")
    spans = int(header.split("  spans ")[1].split()[0])
    assert spans > 1703 and "errors 3" in header  # session, __init__, process, 1,700 checks, ticks
    lines = summary.splitlines()
    assert lines[0] == f"Summary: 5 functions, {spans:,} spans"
    check = next(line for line in lines if line.strip().startswith(CHECK))
    assert check.split()[1] == "1,700" and check.split()[-1] == "3"
    slowest = lines.index("  slowest calls:")
    assert all("#" in line for line in lines[slowest + 1 : slowest + 6])
    raised = lines.index("  exceptions: 3")
    assert [line.split("ValueError: ")[1].split()[0:3] for line in lines[raised + 1 :]] == [
        ["out", "of", "stock:"]
    ] * 3
    assert timeline.lstrip().startswith("+")


def test_the_summary_of_a_big_trace_can_be_left_out(recorded: tuple[Path, str]) -> None:
    out = _history(recorded, "--no-summary").stdout
    assert "Summary:" not in out and "slowest calls:" not in out


def test_repeated_sibling_calls_fold_into_one_line_that_counts_the_raised_ones(
    recorded: tuple[Path, str],
) -> None:
    lines = _timeline(_history(recorded).stdout)
    folded = [line for line in lines if line.lstrip().startswith(f"CALL {CHECK} × ")]
    assert [line.split("  (total")[0] for line in folded] == [f"    CALL {CHECK} × 340"] * 4 + [
        f"    CALL {CHECK} × 340, 3 raised (first #{folded[-1].split('(first #')[1][:16]})"
    ]
    assert not any(line.lstrip().startswith(f"CALL {CHECK}(") for line in lines)
    unfolded = _timeline(_history(recorded, "--full").stdout)
    assert sum(line.lstrip().startswith(f"CALL {CHECK}(") for line in unfolded) == 1700
    assert sum(line.lstrip().startswith(f"EXCEPTION {CHECK} ValueError") for line in unfolded) == 3


def test_function_folds_repeated_matching_calls_inside_the_matching_call_around_them_unless_full(
    recorded: tuple[Path, str],
) -> None:
    lines = _timeline(_history(recorded, "--function", "check_stock").stdout)
    assert [line.split("  (total")[0] for line in lines] == [f"CALL {CHECK} × 340"] * 4 + [
        f"CALL {CHECK} × 340, 3 raised (first #{lines[-1].split('(first #')[1][:16]})"
    ]
    # process() and the checks (not the worker's ticks): each process call holds its 340 checks.
    nested = _timeline(_history(recorded, "--function", "orderflow.[pE]*").stdout)
    calls = [
        line.split("(")[0].rstrip()
        for line in nested
        if "CALL orderflow.process(" in line or f"{CHECK} × " in line
    ]
    assert [line.split(",")[0] for line in calls] == ["CALL orderflow.process", f"  CALL {CHECK} × 340"] * 5
    assert sum(line.startswith("RETURN orderflow.process -> ") for line in nested) == 5
    unfolded = _timeline(_history(recorded, "--function", "check_stock", "--full").stdout)
    assert sum(line.startswith(f"CALL {CHECK}(") for line in unfolded) == 1700
    assert sum(line.startswith("  LINE 22  VAR remaining = ") for line in unfolded) == 1700


def test_orphan_spans_are_marked_inside_the_session_not_printed_after_it(recorded: tuple[Path, str]) -> None:
    # The worker thread's poll() never returned, so its span was never exported: its tick()
    # calls have a parent that is not in the trace.
    lines = _timeline(_history(recorded, "--full").stdout)
    end = next(i for i, line in enumerate(lines) if line.startswith("END SESSION"))
    assert end == len(lines) - 1
    orphans = [line for line in lines if "not in this trace]" in line]
    assert orphans and all(line.startswith("  CALL orderflow.tick()  [parent #") for line in orphans)
    folded = _timeline(_history(recorded).stdout)
    assert any(
        line.startswith("  CALL orderflow.tick × ") and "not in this trace]" in line for line in folded
    )


def test_where_lists_the_matching_events_and_calls_with_their_call_path(recorded: tuple[Path, str]) -> None:
    lines = _timeline(_history(recorded, "--where", "remaining < 0").stdout)
    assert [line for line in lines if "LINE" in line and "FRAME" not in line] == [
        f"orderflow.process > {CHECK}: LINE 22  VAR remaining = {n}" for n in (-4, -2, -1)
    ]
    calls = _timeline(_history(recorded, "--where", "item == 'item4' and qty > 1").stdout)
    assert [line for line in calls if "FRAME" not in line] == [
        f"orderflow.process > {CHECK}: CALL {CHECK}(item='item4', qty=7)"
    ]
    # a local and the call's argument together
    both = _timeline(_history(recorded, "--where", "item == 'item5' and remaining < 0").stdout)
    assert [line for line in both if "FRAME" not in line] == [
        f"orderflow.process > {CHECK}: LINE 22  VAR remaining = -1"
    ]
    # 85 of the calls check item0; each returns 4 (on the span, and on its return line)
    returns = _timeline(_history(recorded, "--where", "return == 4 and not item != 'item0'").stdout)
    assert returns.count(f"orderflow.process > {CHECK}: CALL {CHECK}(item='item0', qty=1)") == 85
    assert returns.count(f"orderflow.process > {CHECK}: LINE 25  RETURN 4") == 85 == len(returns) / 2


def test_a_negated_where_also_lists_the_calls_that_never_captured_its_names(
    recorded: tuple[Path, str],
) -> None:
    # remaining is a local of check_stock (on its line events), never a call's own value: every
    # call passes 'not remaining < 0', the worker's tick() calls too, though they never mention it.
    lines = _timeline(_history(recorded, "--where", "not remaining < 0").stdout)
    assert sum(line.startswith(f"orderflow.process > {CHECK}: CALL {CHECK}(") for line in lines) == 1700
    assert sum(line.startswith("orderflow.process: CALL orderflow.process(") for line in lines) == 5
    assert any(line.startswith("orderflow.tick: CALL orderflow.tick()") for line in lines)
    variables = [line for line in lines if "VAR remaining = " in line and "FRAME" not in line]
    assert len(variables) == 1697 and not any("VAR remaining = -" in line for line in variables)
    assert not any("SESSION" in line for line in lines)  # the session is no call
    # An 'or' whose other side holds without the names: the calls without qty, and the three
    # negative locals.
    either = _timeline(_history(recorded, "--where", "remaining < 0 or not qty < 100").stdout)
    assert [line for line in either if "VAR remaining" in line and "FRAME" not in line] == [
        f"orderflow.process > {CHECK}: LINE 22  VAR remaining = {n}" for n in (-4, -2, -1)
    ]
    assert not any(f"CALL {CHECK}(" in line for line in either)
    assert sum(line.startswith("orderflow.process: CALL orderflow.process(") for line in either) == 5


def test_a_malformed_where_is_one_line_naming_the_problem(recorded: tuple[Path, str]) -> None:
    store, trace_id = recorded
    result = run_cli("history", trace_id, "--where", "remaining <", cwd=store.parent, store=store)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("otel-scope: --where: where 'remaining <': the condition ends too soon")


def test_a_long_value_is_shown_once_then_by_reference_unless_full(recorded: tuple[Path, str]) -> None:
    lines = _timeline(_history(recorded).stdout)
    calls = [line for line in lines if line.startswith("  CALL orderflow.process(")]
    assert len(calls) == 5
    assert calls[0].startswith("  CALL orderflow.process(env=@1=Environment(options={'option_0': 0,")
    assert all(line.startswith("  CALL orderflow.process(env=@1, orders=@") for line in calls[1:])
    full = _history(recorded, "--full").stdout
    assert "=@1" not in full and full.count("CALL orderflow.process(env=Environment(options={") == 5


def test_depth_window_and_limit_narrow_the_timeline(recorded: tuple[Path, str]) -> None:
    shallow = _history(recorded, "--full", "--depth", "1").stdout
    assert CHECK + "(" not in shallow and "CALL orderflow.process(" in shallow
    limited = _history(recorded, "--full", "--limit", "5", "--no-summary").stdout
    assert len(_timeline(limited)) == 5 and limited.rstrip().endswith("-- stopped after --limit 5 lines --")
    everything = [line.split()[0] for line in _history(recorded, "--full", "--no-summary").stdout.splitlines()
                  if line.lstrip().startswith("+")]  # fmt: skip
    offsets = sorted(float(o[1:-2]) for o in everything if o.endswith("ms"))
    middle = offsets[len(offsets) // 2]
    window = _history(
        recorded, "--full", "--no-summary", "--since", f"{middle}ms", "--until", f"{middle + 5}ms"
    )
    shown = [line for line in _timeline(window.stdout) if "VAR" in line]
    assert 0 < len(shown) < 1700


def test_follow_takes_a_span_id_as_the_timeline_prints_it(recorded: tuple[Path, str]) -> None:
    out = _history(recorded).stdout
    span_id = out.split("CALL orderflow.tick × ")[1].split("#")[1].split(")")[0]
    followed = _history(recorded, "--follow", f"#{span_id}").stdout
    assert _timeline(followed)[0].startswith("  CALL orderflow.tick()")


def _on_a_terminal(args: list[str], env: dict[str, str]) -> str:
    """Run ``otel-scope ARGS`` with stdout on a pseudo-terminal; everything it (or its pager) printed."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([str(OTEL_SCOPE), *args], stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the terminal closed: every writer has exited
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    process.wait(10)
    os.close(leader)
    return b"".join(chunks).decode("utf-8", "replace")


def test_the_pager_runs_on_a_terminal_and_never_when_piped_or_refused(recorded: tuple[Path, str]) -> None:
    store, trace_id = recorded
    pager = {"PAGER": "sed -e s/^/PAGED:/"}
    assert "PAGED:" not in _history(recorded, **pager).stdout  # piped: never paged
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_SCOPE_")}
    env.update(pager, TERM="xterm-256color")
    paged = _on_a_terminal(["history", trace_id, "--store", str(store)], env)
    assert "PAGED:\x1b[1mTrace " in paged  # through the pager, in colour for the terminal
    unpaged = _on_a_terminal(["history", trace_id, "--store", str(store), "--no-pager"], env)
    assert "PAGED:" not in unpaged and "Trace " in unpaged
