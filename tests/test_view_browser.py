"""The web view in a real browser (Debian's Chromium via Playwright) on the example shop's trace.

The trace is recorded by running examples/app.py under ``opentelemetry-instrument --scope-mode
hybrid`` into a real local store; the page is served by a real ``otel-scope view`` process, or
written by ``otel-scope view --html`` and opened from ``file://`` with every network request
refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from view_browser import (
    EXAMPLES,
    ExampleTrace,
    Server,
    launch_chromium,
    record_example,
    screenshot,
    start_server,
    view,
)

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is part of the `test` extra: pip install -e '.[test]'"
)

CHECK_STOCK = "shop.inventory.InventoryChecker.check_stock"
SOURCE = (EXAMPLES / "shop" / "inventory.py").read_text().splitlines()
RESERVED_LINE = next(i for i, t in enumerate(SOURCE, 1) if "reserved = already_reserved + 1" in t)


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> ExampleTrace:
    return record_example(tmp_path_factory.mktemp("view-example"))


@pytest.fixture(scope="module")
def server(example: ExampleTrace) -> Iterator[Server]:
    yield from start_server(example, "--last")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server: Server):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1400, "height": 1200})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.url)
    page.wait_for_selector(".bar")
    yield page
    context.close()
    assert not errors, errors


def open_first_check_stock(page) -> None:  # type: ignore[no-untyped-def]
    page.locator(f'.bar[aria-label^="{CHECK_STOCK},"]').first.click()
    page.wait_for_function(f"document.getElementById('call-title').textContent === '{CHECK_STOCK}'")


def variables(page) -> str:  # type: ignore[no-untyped-def]
    return page.locator("#variables").inner_text()


def test_lanes_per_component_and_an_arrow_per_message(tmp_path: Path, page, example: ExampleTrace) -> None:
    lanes = page.locator(".lane").evaluate_all("els => els.map(e => e.dataset.lane)")
    assert {"shop.orders.OrderReceiver", "shop.inventory.InventoryChecker", "session"} <= set(lanes)
    arrows = page.locator("path.message")
    assert arrows.count() == 5  # four orders and the closing None, each put on the queue
    lane_of = dict(page.locator(".bar").evaluate_all("els => els.map(e => [e.dataset.call, e.dataset.lane])"))
    ends = arrows.evaluate_all("els => els.map(e => [e.dataset.from, e.dataset.to])")
    assert {(lane_of[a], lane_of[b]) for a, b in ends} == {
        ("shop.orders.OrderReceiver", "shop.inventory.InventoryChecker")
    }
    assert example.trace_id in page.locator("#trace-facts").inner_text()
    screenshot(page, "view-lanes", tmp_path)
    width = float(page.locator("#lanes svg").get_attribute("width"))
    page.locator("#zoom-in").click()
    page.keyboard.press("+")
    assert page.locator("#zoom-level").inner_text() == "4×"
    assert float(page.locator("#lanes svg").get_attribute("width")) > 3 * width - 1000
    assert page.locator("path.message").count() == 5
    page.keyboard.press("0")
    assert float(page.locator("#lanes svg").get_attribute("width")) == width


def test_opening_check_stock_shows_its_source_with_reserved_1_on_its_line(tmp_path: Path, page) -> None:
    open_first_check_stock(page)
    row = page.locator(f'#source tr[data-line="{RESERVED_LINE}"]')
    assert "reserved = already_reserved + 1" in row.locator("td.code").inner_text()
    assert row.locator("td.values").inner_text().strip() == "reserved = 1"
    assert "Order(order_id=1" in page.locator("#arguments").inner_text()
    state = page.locator("#state").inner_text()
    assert "self.reserved" in state and "{'widget': 1}" in state
    assert "'status': 'reserved'" in page.locator("#result").inner_text()
    screenshot(page, "view-check-stock", tmp_path)


def test_stepping_backward_and_forward_changes_the_variables_panel(tmp_path: Path, page) -> None:
    open_first_check_stock(page)
    at_call = variables(page)
    assert "order" in at_call and "already_reserved" not in at_call
    page.locator("#next").click()  # the message received
    page.keyboard.press("ArrowRight")  # line 19: on_hand = 5
    page.keyboard.press("ArrowRight")  # line 20: already_reserved = 0
    later = variables(page)
    assert "already_reserved\t0" in later and later != at_call
    assert page.locator("#source tr.current").get_attribute("data-line") == str(RESERVED_LINE - 4)
    assert page.locator("#variables tr.changed").inner_text().startswith("already_reserved")
    page.keyboard.press("ArrowLeft")
    earlier = variables(page)
    assert "on_hand\t5" in earlier and "already_reserved" not in earlier
    assert page.locator("#source tr.current").get_attribute("data-line") == str(RESERVED_LINE - 5)
    page.locator("#prev").click()
    page.locator("#prev").click()
    assert variables(page) == at_call
    screenshot(page, "view-stepping", tmp_path)


def test_a_message_is_followed_both_ways_between_sender_and_receiver(page) -> None:
    open_first_check_stock(page)
    assert "received #" in page.locator("#messages").inner_text()
    page.keyboard.press("s")  # to the sender of the message this call received
    page.wait_for_function("document.getElementById('call-title').textContent.endsWith('.receive')")
    assert "Order(order_id=1" in page.locator("#result").inner_text()
    assert page.locator(".bar.selected").get_attribute("data-lane") == "shop.orders.OrderReceiver"
    assert page.locator("path.message.active").count() == 1  # the arrow of the message it sent
    page.locator("#messages button", has_text="check_stock").click()  # and back to the receiver
    page.wait_for_function(f"document.getElementById('call-title').textContent === '{CHECK_STOCK}'")
    assert "Order(order_id=1" in page.locator("#arguments").inner_text()


def test_search_finds_the_bugs_value_and_opens_its_line(tmp_path: Path, page) -> None:
    page.keyboard.press("/")
    page.keyboard.type("reserved == 1 and available == 5")
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelectorAll('#search-list li').length > 0")
    results = page.locator("#search-list li").all_inner_texts()
    assert len(results) == 1 and f"check_stock line {RESERVED_LINE}: reserved = 1" in results[0]
    current = page.locator("#source tr.current")
    assert current.get_attribute("data-line") == str(RESERVED_LINE)
    assert "reserved = 1" in current.inner_text()
    assert "reserved\t1" in page.locator("#variables tr.changed").inner_text()
    page.locator("#q").fill("reserved <")
    page.locator("#q").press("Enter")
    page.wait_for_function("document.getElementById('search-status').textContent.includes('ends too soon')")
    assert "the condition ends too soon" in page.locator("#search-status").inner_text()
    screenshot(page, "view-search", tmp_path)


def test_keyboard_opens_a_bar_and_dark_mode_follows_the_system(
    tmp_path: Path, browser, server: Server
) -> None:
    context = browser.new_context(color_scheme="dark", viewport={"width": 1400, "height": 1200})
    page = context.new_page()
    page.goto(server.url)
    page.wait_for_selector(".bar")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(13, 17, 23)"
    page.locator(f'.bar[aria-label^="{CHECK_STOCK},"]').first.focus()
    page.keyboard.press("Enter")
    page.wait_for_function(f"document.getElementById('call-title').textContent === '{CHECK_STOCK}'")
    page.locator("#theme").click()
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"
    page.locator("#theme").click()
    screenshot(page, "view-dark", tmp_path)
    context.close()


def test_self_contained_html_works_from_file_with_the_network_blocked(
    browser, example: ExampleTrace, tmp_path: Path
) -> None:
    out = tmp_path / "trace.html"
    result = view(example, example.trace_id[:8], "--html", str(out))
    assert result.returncode == 0, result.stderr
    context = browser.new_context(viewport={"width": 1400, "height": 1200})
    requested: list[str] = []

    def refuse(route) -> None:  # type: ignore[no-untyped-def]
        requested.append(route.request.url)
        route.abort()

    context.route(re.compile(r"^(?!file:).*"), refuse)
    page = context.new_page()
    page.goto(out.as_uri())
    page.wait_for_selector(".bar")
    assert page.locator("path.message").count() == 5
    assert "15 of 15 calls embedded" in page.locator("#notice").inner_text()
    open_first_check_stock(page)
    row = page.locator(f'#source tr[data-line="{RESERVED_LINE}"]')
    assert row.locator("td.values").inner_text().strip() == "reserved = 1"
    page.keyboard.press("ArrowRight")
    assert "received #" in page.locator("#step-text").inner_text()
    page.locator("#q").fill("reserved == 1 and available == 5")
    page.locator("#q").press("Enter")
    page.wait_for_function("document.querySelectorAll('#search-list li').length > 0")
    assert page.locator("#source tr.current").get_attribute("data-line") == str(RESERVED_LINE)
    screenshot(page, "view-html-offline", tmp_path)
    context.close()
    assert requested == []  # nothing tried to leave the file


PARITY_QUERIES = [
    "reserved == 1",
    "reserved > 1 and available <= 4",
    "not available < 3 and already_reserved >= 1",
    "on_hand == 5 or item_id == 'x'",
    "order == \"Order(order_id=2, item='gadget', quantity=1)\"",
    "0 < available < 5",
    "return != None",
    "item == 'widget'",
]
BAD_QUERIES = [
    "",
    "reserved",
    "reserved = 1",
    "(reserved == 1",
    "1 == 1",
    "reserved == 1 and",
    "reserved == {'widget': 2}",
    "and == 1",
]


def test_the_html_files_search_agrees_with_the_servers(
    browser, example: ExampleTrace, tmp_path: Path
) -> None:
    """The file's JavaScript evaluator and the server's (otel_scope.timeline.query) find the same steps
    and refuse the same malformed text with the same message."""
    from otel_scope.timeline import LocalStoreSource
    from otel_scope.timeline.query import QueryError
    from otel_scope.view import ViewData, search

    out = tmp_path / "trace.html"
    assert view(example, "--html", str(out)).returncode == 0
    data = ViewData(LocalStoreSource(example.store).get_trace(example.trace_id))
    page = browser.new_page()
    page.goto(out.as_uri())
    page.wait_for_selector(".bar")
    in_browser = """q => {
      try {
        const where = OtelScopeQuery.compileWhere(q);
        const calls = JSON.parse(document.getElementById('otel-scope-data').textContent).calls;
        const found = Object.values(calls).flatMap(c => OtelScopeQuery.callMatches(where, c));
        return found.map(m => [m.call, m.step]);
      } catch (err) { return err.message; }
    }"""
    for query in PARITY_QUERIES:
        expected = sorted([m["call"], m["step"]] for m in search(data, query)["matches"])
        assert sorted(page.evaluate(in_browser, query)) == expected, query
    assert any(search(data, q)["count"] for q in PARITY_QUERIES[1:])
    for query in BAD_QUERIES:
        with pytest.raises(QueryError) as raised:
            search(data, query)
        assert page.evaluate(in_browser, query) == str(raised.value), query
    page.close()
