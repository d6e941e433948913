"""``otel-scope view`` without a browser: the server's API, the bounded HTML file, its errors.

The trace is the example shop's, recorded by a real run into a real local store.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_scope.timeline import FileSource
from otel_scope.view import ViewData, page, standalone_page
from scope_run import BIN
from view_browser import ExampleTrace, Server, record_example, start_server, view

CHECK_STOCK = "shop.inventory.InventoryChecker.check_stock"


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> ExampleTrace:
    return record_example(tmp_path_factory.mktemp("view-cli"))


@pytest.fixture(scope="module")
def server(example: ExampleTrace) -> Iterator[Server]:
    yield from start_server(example, example.trace_id[:10])


def get(server: Server, path: str, host: str | None = None) -> tuple[int, str, str]:
    url = urllib.parse.urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.putrequest("GET", path, skip_host=host is not None)
    if host is not None:
        conn.putheader("Host", host)
    conn.endheaders()
    response = conn.getresponse()
    body = response.read().decode()
    conn.close()
    return response.status, response.getheader("Content-Type") or "", body


def test_the_summary_comes_first_and_each_call_on_demand(server: Server, example: ExampleTrace) -> None:
    status, kind, body = get(server, "/api/summary")
    assert (status, kind) == (200, "application/json; charset=utf-8")
    summary = json.loads(body)
    assert summary["trace_id"] == example.trace_id
    assert len(summary["calls"]) == summary["calls_total"] == 16
    assert "steps" not in summary["calls"][0]  # bars only: the opened view is fetched later
    assert len(summary["messages"]) == 5
    checks = [c for c in summary["calls"] if c["name"] == CHECK_STOCK]
    assert {c["lane"] for c in checks} == {"shop.inventory.InventoryChecker"}
    status, _, body = get(server, f"/api/call/{checks[0]['id']}")
    call = json.loads(body)
    assert status == 200 and call["name"] == CHECK_STOCK
    assert call["source"]["lines"][0].strip().startswith("def check_stock")
    reserved = [s for s in call["steps"] if s["kind"] == "locals" and s["set"] == {"reserved": "1"}]
    assert len(reserved) == 1
    assert "reserved = already_reserved + 1" in call["source"]["lines"][reserved[0]["line"] - 18]
    status, _, body = get(server, "/api/call/00000000000000ff")
    assert status == 404 and "no such span" in json.loads(body)["error"]


def test_search_answers_with_matches_or_one_line_naming_the_problem(server: Server) -> None:
    status, _, body = get(server, "/api/search?q=" + urllib.parse.quote("reserved == 1"))
    found = json.loads(body)
    assert status == 200 and found["count"] == 2  # the widget order of 3 and the gadget order of 1
    assert {m["text"] for m in found["matches"]} == {"reserved = 1"}
    status, _, body = get(server, "/api/search?q=" + urllib.parse.quote("reserved = 1"))
    error = json.loads(body)["error"]
    assert status == 400 and "\n" not in error and "column 10" in error and "accepted:" in error


def test_the_server_answers_on_loopback_names_only(server: Server) -> None:
    assert get(server, "/", host="evil.example:80")[0] == 403  # DNS rebinding
    status, kind, body = get(server, "/")
    assert status == 200 and kind.startswith("text/html") and 'src="static/view.js"' in body
    assert get(server, "/static/view.js")[0] == 200
    assert get(server, "/static/../model.py")[0] == 404


def test_the_html_file_embeds_a_bounded_subset_and_says_so(
    example: ExampleTrace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    exported = tmp_path / "trace.json"
    subprocess.run(
        [str(BIN / "otel-scope"), "export", example.trace_id, "-o", str(exported)],
        env=example.env,
        check=True,
        capture_output=True,
    )
    monkeypatch.setattr(page, "MAX_EMBEDDED_CALLS", 4)
    html = standalone_page(ViewData(FileSource(exported).get_trace(example.trace_id)))
    assert "<script src=" not in html and "<link" not in html  # nothing to fetch
    block = html.split('id="otel-scope-data">', 1)[1].split("</script>", 1)[0]
    data = json.loads(block)
    assert data["embedded"]["calls"] == 4 and data["embedded"]["of"] == 15
    assert len(data["summary"]["calls"]) == 16  # every bar stays
    # Calls with captured values go first: all four compile-time check_stock calls.
    assert {c["name"] for c in data["calls"].values()} == {CHECK_STOCK}


def test_a_trace_file_is_read_with_from(example: ExampleTrace, tmp_path: Path) -> None:
    exported = tmp_path / "trace.json"
    subprocess.run(
        [str(BIN / "otel-scope"), "export", example.trace_id, "-o", str(exported)],
        env=example.env,
        check=True,
        capture_output=True,
    )
    out = tmp_path / "page.html"
    result = view(example, "--from", str(exported), "--html", str(out))
    assert result.returncode == 0, result.stderr
    assert example.trace_id in result.stdout and "</html>" in out.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "missing.json"], "--from takes 'jaeger [URL]', 'tempo [URL]' or a trace file"),
        (["abc", "--last"], "give TRACE_ID or --last, not both"),
        (["--port", "70000"], "--port takes 0-65535"),
        (["--html", "/nonexistent-dir/x.html"], "cannot write /nonexistent-dir/x.html"),
    ],
)
def test_bad_input_is_one_line_naming_what_is_accepted(
    example: ExampleTrace, args: list[str], message: str
) -> None:
    result = view(example, *args)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("otel-scope: ") and message in result.stderr
    assert result.stderr.count("\n") == 1


def test_calls_in_a_child_process_get_lanes_of_their_own(tmp_path: Path) -> None:
    """A real ``multiprocessing.Queue`` hand-off to a forked child (tests/apps/app_messages.py)."""
    from otel_scope.timeline import LocalStoreSource
    from scope_run import run_instrumented

    run = run_instrumented(
        "app_messages.py", ["--scope-targets", "msg_work:*"], {"HANDOFF_KIND": "mp_queue_fork"}, tmp_path
    )
    assert run.returncode == 0, run.stderr
    trace = LocalStoreSource(tmp_path / "store.sqlite3").get_trace(run.session_trace_id or "")
    summary = ViewData(trace).summary()
    lanes = {lane["id"] for lane in summary["lanes"]}
    session = next(s for s in trace.spans if s.name == "otel_scope.session")
    parent = f"pid {session.attributes['process.pid']}"
    assert {f"msg_work ({parent})", "msg_work (process 2)"} <= lanes
    lane_of = {c["id"]: c["lane"] for c in summary["calls"]}
    (arrow,) = summary["messages"]
    assert arrow["channel"] == "multiprocessing.Queue"
    assert (lane_of[arrow["from"]], lane_of[arrow["to"]]) == (f"msg_work ({parent})", "msg_work (process 2)")


def test_a_large_trace_draws_a_stated_subset_of_bars_and_search_still_reads_every_call(
    example: ExampleTrace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from otel_scope.timeline import LocalStoreSource
    from otel_scope.view import model, search

    monkeypatch.setattr(model, "MAX_SUMMARY_CALLS", 5)
    data = ViewData(LocalStoreSource(example.store).get_trace(example.trace_id))
    summary = data.summary()
    assert (len(summary["calls"]), summary["calls_total"]) == (5, 16)
    drawn = {c["id"] for c in summary["calls"]}
    assert all(m["from"] in drawn or m["to"] in drawn for m in summary["messages"])
    found = search(data, "reserved == 1")
    assert found["count"] == 2 and not {m["call"] for m in found["matches"]} & drawn


def test_a_call_whose_source_file_is_gone_says_so(example: ExampleTrace) -> None:
    from otel_scope.timeline import LocalStoreSource

    trace = LocalStoreSource(example.store).get_trace(example.trace_id)
    check = next(s for s in trace.spans if s.name == CHECK_STOCK)
    check.attributes["code.file.path"] = "/nowhere/inventory.py"
    source = ViewData(trace).call(check.span_id)["source"]  # type: ignore[index]
    assert source == {
        "path": "/nowhere/inventory.py",
        "missing": "cannot read /nowhere/inventory.py here (FileNotFoundError)",
    }
