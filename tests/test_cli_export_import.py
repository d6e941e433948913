"""``otel-scope export`` and ``otel-scope import`` as subprocesses: files that round-trip."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from test_cli_support import ESC, run_cli, sample_store
from test_timeline_sample import EXPECTED_LINES

PREFIX = 23


def _entries(stdout: str) -> list[str]:
    return ["  " * e["depth"] + e["text"] for e in json.loads(stdout)]


@pytest.mark.parametrize("fmt", ["otlp-json", "jaeger-json"])
def test_exported_file_imports_to_the_same_timeline(tmp_path: Path, fmt: str) -> None:
    path, ids = sample_store(tmp_path)
    out = tmp_path / f"trace.{fmt}.json"
    exported = run_cli("export", ids[1][:10], "--format", fmt, "-o", str(out), cwd=tmp_path, store=path)
    assert exported.returncode == 0, exported.stderr
    assert exported.stderr.strip() == f"wrote trace {ids[1]} (6 spans, {fmt}) to {out}"
    imported = run_cli("import", str(out), "--no-store", "--json", cwd=tmp_path, store=path)
    assert imported.returncode == 0, imported.stderr
    history = run_cli("history", ids[1], "--json", cwd=tmp_path, store=path)
    assert _entries(imported.stdout) == _entries(history.stdout) == EXPECTED_LINES
    assert json.loads(imported.stdout) == json.loads(history.stdout)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda lines: lines, id="as exported"),
        # proto field names (snake_case) on one span line: read through camel_case
        pytest.param(
            lambda lines: [
                lines[0],
                lines[1],
                lines[2].replace('"startTimeUnixNano"', '"start_time_unix_nano"'),
                *lines[3:],
            ],
            id="snake_case keys",
        ),
        # a span line broken in two part-way: the general reader takes over after the spans read
        pytest.param(
            lambda lines: [*lines[:4], lines[4].replace(', "status": ', ',\n  "status": '), *lines[5:]],
            id="re-wrapped part-way",
        ),
        pytest.param(lambda lines: [" ".join(lines)], id="one line"),
    ],
)
def test_an_exported_otlp_file_imports_every_span_once_however_it_was_edited(
    tmp_path: Path, edit: Callable[[list[str]], list[str]]
) -> None:
    path, ids = sample_store(tmp_path)
    out = tmp_path / "trace.json"
    assert run_cli("export", ids[1], "-o", str(out), cwd=tmp_path, store=path).returncode == 0
    edited = tmp_path / "edited.json"
    edited.write_text("\n".join(edit(out.read_text().splitlines())) + "\n")
    json.loads(edited.read_text())  # still one valid document
    imported = run_cli(
        "import", str(edited), "--store", str(tmp_path / "mine.sqlite3"), "--json", cwd=tmp_path
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stderr.strip().startswith("imported 6 new spans of 1 trace(s)")
    assert _entries(imported.stdout) == EXPECTED_LINES


def test_export_writes_otlp_json_to_stdout_by_default(tmp_path: Path) -> None:
    path, ids = sample_store(tmp_path)
    result = run_cli("export", ids[0], cwd=tmp_path, store=path)
    document = json.loads(result.stdout)
    spans = [s for rs in document["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
    assert {s["traceId"] for s in spans} == {ids[0]} and len(spans) == 6


def test_import_adds_the_trace_to_the_store_and_renders_it(tmp_path: Path) -> None:
    source_store, ids = sample_store(tmp_path / "colleague")
    out = tmp_path / "shared.json"
    run_cli("export", ids[1], "--format", "jaeger-json", "-o", str(out), cwd=tmp_path, store=source_store)
    mine = tmp_path / "mine" / "traces.sqlite3"
    result = run_cli("import", str(out), cwd=tmp_path, store=mine)
    assert result.returncode == 0, result.stderr
    assert ESC not in result.stdout
    assert [
        line[PREFIX:] for line in result.stdout.splitlines() if line.lstrip().startswith("+")
    ] == EXPECTED_LINES
    assert result.stderr.strip() == f"imported 6 new spans of 1 trace(s) into {mine}"
    sessions = json.loads(run_cli("sessions", "--json", cwd=tmp_path, store=mine).stdout)
    assert [s["trace_id"] for s in sessions] == [ids[1]]
    assert run_cli("history", "--last", cwd=tmp_path, store=mine).stdout == result.stdout


def test_import_of_jsonl_with_several_traces_renders_each(tmp_path: Path) -> None:
    path, ids = sample_store(tmp_path)
    lines = [run_cli("export", trace_id, cwd=tmp_path, store=path).stdout for trace_id in ids]
    jsonl = tmp_path / "spans.jsonl"
    jsonl.write_text("".join(json.dumps(json.loads(text)) + "\n" for text in lines))
    result = run_cli("import", str(jsonl), "--no-store", cwd=tmp_path, store=path)
    assert result.returncode == 0, result.stderr
    assert [line.split()[1] for line in result.stdout.splitlines() if line.startswith("Trace ")] == ids
    only = run_cli(
        "import", str(jsonl), "--no-store", "--trace", ids[1][:6], "--json", cwd=tmp_path, store=path
    )
    assert {e["trace_id"] for e in json.loads(only.stdout)} == {ids[1]}
