"""The SDK's own export work is never traced, even when a target selects what it calls."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from scope_run import run_instrumented


def test_tracing_json_dumps_records_the_programs_call_and_not_the_stores_own(tmp_path: Path) -> None:
    # The local store encodes every exported span with json.dumps: traced, each export made new
    # spans to export, and the process never finished.
    script = tmp_path / "app.py"
    script.write_text("import json\nprint(json.dumps({'a': 1}))\n")
    env = {"OTEL_TRACES_EXPORTER": "otel_scope", "OTEL_SCOPE_CONTROL": "false"}
    run = run_instrumented(str(script), ["--scope-targets", "json:dumps"], env, tmp_path, timeout=60)
    assert (run.returncode, run.stdout) == (0, '{"a": 1}\n')
    with sqlite3.connect(tmp_path / "store.sqlite3") as db:
        rows = db.execute("SELECT attributes FROM spans WHERE name = 'json.dumps'").fetchall()
    assert [json.loads(a)["otel_scope.arg.obj"] for (a,) in rows] == ["{'a': 1}"]
