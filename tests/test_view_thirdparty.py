"""The web view on real library code: the standard library's ``textwrap`` loop (sampled hits, so
the hit selector must show the gap) and ``json.loads`` raising (jump to the exception)."""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from scope_run import base_env, run_instrumented
from view_browser import ExampleTrace, Server, launch_chromium, screenshot, start_server

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is part of the `test` extra: pip install -e '.[test]'"
)

JOB = """\
import json
import textwrap

text = " ".join(f"word{i}" for i in range(60))
print(len(textwrap.wrap(text, width=30)))
try:
    json.loads('{"order": 1,}')
except ValueError as exc:
    print("bad order:", exc)
"""
WRAP_LINES, WRAP_FIRST = inspect.getsourcelines(textwrap.TextWrapper._wrap_chunks)
# The loop line that measures each chunk: runs once per word and space (119 times here).
CHUNK_LINE = WRAP_FIRST + next(i for i, t in enumerate(WRAP_LINES) if "l = len(chunks[-1])" in t)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("view-thirdparty")
    (tmp / "job.py").write_text(JOB)
    flags = [
        "--scope-mode", "hybrid",
        "--scope-targets", "json:loads,textwrap:wrap",
        "--scope-locals", "textwrap:TextWrapper._wrap_chunks",
    ]  # fmt: skip
    run = run_instrumented("job.py", flags, {}, tmp, cwd=tmp)
    assert run.returncode == 0 and "bad order" in run.stdout, run.stderr
    yield from start_server(ExampleTrace(run.session_trace_id or "", base_env(tmp), tmp / "store.sqlite3"))


@pytest.fixture
def page(server: Server):  # type: ignore[no-untyped-def]
    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(server.url)
        page.wait_for_selector(".bar")
        yield page
        browser.close()


def test_a_sampled_loop_line_offers_its_recorded_hits_and_shows_the_gap(tmp_path: Path, page) -> None:
    page.locator('.bar[aria-label^="textwrap.TextWrapper._wrap_chunks,"]').click()
    select = page.locator(f'#source tr[data-line="{CHUNK_LINE}"] select')
    options = select.locator("option").all_inner_texts()
    assert options[:5] == ["hit 1", "hit 2", "hit 3", "hit 4", "hit 5"]
    gap = options[5]
    assert gap.startswith("… hits 6–") and gap.endswith("not recorded")
    hits = [o for o in options if o.startswith("hit ")]
    last_hit = int(options[-1].split()[1])
    # the first 5 and the last 5 kept (OTEL_SCOPE_LOOP_SAMPLE); past 80 hits a long loop is thinned
    # before rendering, so the last ones may have gaps of their own between them
    assert last_hit > 50 and len(hits) == 10
    assert all(o.startswith("… hits ") for o in options if not o.startswith("hit "))
    values = page.locator(f'#source tr[data-line="{CHUNK_LINE}"] td.values span')
    assert values.inner_text() == "l = 5"  # word0
    select.select_option(label=options[-1])
    current = page.locator("#source tr.current")
    assert current.get_attribute("data-line") == str(CHUNK_LINE)
    assert re.search(rf"line {CHUNK_LINE}: l = \d+$", page.locator("#step-text").inner_text())
    screenshot(page, "view-loop-hits", tmp_path)


def test_jump_to_exception_opens_the_call_that_raised_at_its_exception(tmp_path: Path, page) -> None:
    page.keyboard.press("e")
    page.wait_for_function("document.getElementById('call-title').textContent === 'json.loads'")
    step_text = page.locator("#step-text").inner_text()
    assert "raised json.decoder.JSONDecodeError: " in step_text  # the message differs across Pythons
    assert "JSONDecodeError" in page.locator("#result .exception").inner_text()
    assert "exception" in page.locator("#variables tr.changed").inner_text()
    current = page.locator("#source tr.current")
    assert "_default_decoder.decode(s)" in current.inner_text()  # the line of json.loads that raised
    assert Path(page.locator("#source-note").inner_text().split(" · ")[0]).name == "__init__.py"
    screenshot(page, "view-exception", tmp_path)
