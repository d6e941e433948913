"""``otel-scope history`` of a run whose calls were sampled (issue 14): the calls left out are
counted per function in the summary, from the session span of a real subprocess run."""

from __future__ import annotations

from pathlib import Path

from scope_run import run_instrumented
from test_cli_support import run_cli

CHECK = "orderflow.Environment.check_stock"
CALLS = 1_700  # app_orderflow.py's stock checks


def test_history_counts_the_calls_sampling_left_out_per_function(tmp_path: Path) -> None:
    env = {
        "OTEL_TRACES_EXPORTER": "otel_scope",
        "OTEL_SCOPE_CALL_SAMPLING": "true",
        "OTEL_SCOPE_CALL_SAMPLE_RATE": "0",  # after the first calls, only calls that raise
    }
    run = run_instrumented("app_orderflow.py", ["--scope-targets", "orderflow:*"], env, tmp_path, timeout=120)
    assert run.returncode == 0 and run.stdout == "failed 3\n", run.stderr
    result = run_cli("history", str(run.session_trace_id), cwd=tmp_path, store=tmp_path / "store.sqlite3")
    assert result.returncode == 0, result.stderr
    header, _, rest = result.stdout.partition("\n\n")
    summary = rest.partition("\n\n")[0].splitlines()
    assert summary[0].startswith("Summary: ")  # shown although the sampled trace is small
    row = next(line for line in summary if line.strip().startswith(CHECK))
    recorded = int(row.split()[1].replace(",", ""))
    left_out = int(row.split("  ")[-1].split()[0].replace(",", ""))
    assert row.endswith(f"{left_out:,} calls sampled out")
    assert recorded + left_out == CALLS  # what was recorded and what was counted: every call
    assert recorded < 20 and row.split()[-5] == "3"  # the first calls and the 3 that raised
    # The header has the run's totals (the polling worker's calls were sampled too).
    total = header.split("call sampling left out ")[1]
    assert int(total.split()[0].replace(",", "")) >= left_out and "calls of sampled functions" in total
