"""The example app's trace, received over OTLP and kept in the local store, written as OTLP JSON and
as Jaeger JSON, and loaded back into the same timeline from either file."""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from pathlib import Path

from scope_run import BIN, base_env, run_instrumented

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def otel_scope(tmp_path: Path, *args: str) -> str:
    result = subprocess.run(
        [str(BIN / "otel-scope"), *args], env=base_env(tmp_path), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_example_trace_round_trips_through_otlp_json_and_jaeger_json(otlp_receiver, tmp_path: Path) -> None:
    env = {**otlp_receiver.env("http"), "OTEL_TRACES_EXPORTER": "otlp,otel_scope"}
    run = run_instrumented("app.py", ["--scope-mode", "hybrid"], env, tmp_path, cwd=EXAMPLES)
    assert run.returncode == 0, run.stderr
    trace_id = run.session_trace_id
    received = otlp_receiver.wait_for(lambda s: any(x.name == "otel_scope.session" for x in s))
    received_events = Counter(e.name for s in received for e in s.events)

    stored = json.loads(otel_scope(tmp_path, "history", trace_id, "--json"))
    for fmt in ("otlp-json", "jaeger-json"):
        path = tmp_path / f"trace.{fmt}.json"
        otel_scope(tmp_path, "export", trace_id, "--format", fmt, "-o", str(path))
        document = json.loads(path.read_text())
        if fmt == "otlp-json":  # hex IDs, as the OTLP JSON encoding requires
            ids = {
                s["traceId"]
                for rs in document["resourceSpans"]
                for ss in rs["scopeSpans"]
                for s in ss["spans"]
            }
            assert ids == {trace_id}
        else:
            assert document["data"][0]["traceID"] == trace_id
        loaded = json.loads(otel_scope(tmp_path, "import", str(path), "--json", "--no-store"))
        assert _shape(loaded) == _shape(stored), fmt
    # what the collector received over OTLP is what the store (and so the files) hold
    kinds = Counter(e["kind"] for e in stored)
    assert kinds["locals"] == received_events["otel_scope.locals"] > 0
    assert kinds["state"] == received_events["otel_scope.state"] > 0
    assert kinds["message_sent"] == received_events["otel_scope.message.sent"] > 0
    assert kinds["call"] == sum(1 for s in received if s.name != "otel_scope.session")


def _shape(entries: list[dict]) -> list[tuple]:
    """What a timeline shows, minus timing precision (Jaeger JSON keeps microseconds)."""
    return [
        (e["kind"], e["mechanism"], e["function"], _DURATION.sub("", e["text"]), e["line"], e["span_id"])
        for e in entries
    ]


_DURATION = re.compile(r" \([0-9.]+ (ns|µs|ms|s)\)")
