"""The page itself: the hand-written assets shipped in ``static/`` and the self-contained file.

The same ``index.html`` serves both ways. From the local server it links ``view.css``,
``query.js`` and ``view.js`` and fetches the trace from ``/api``; written with ``--html`` it
carries the assets inline and the trace as a JSON block, so it opens from ``file://`` with no
network at all (as coverage.py's and pyinstrument's reports do). The file embeds a bounded
subset: every call's bar, but the opened view (source, steps) only for the calls that fit the
budget, chosen errors first, then calls with captured values, then in time order; the page
states how many it holds.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from otel_scope.view.model import ViewData

ASSETS = {"view.css": "text/css", "query.js": "text/javascript", "view.js": "text/javascript"}
# Budgets of the self-contained file: a bug report attachment, not an archive of the trace.
MAX_EMBEDDED_CALLS = 300
MAX_EMBEDDED_BYTES = 4_000_000


def asset(name: str) -> str:
    # one path part per joinpath call: Python 3.10's Traversable takes no more
    return resources.files("otel_scope.view").joinpath("static").joinpath(name).read_text(encoding="utf-8")


def _fill(head: str, body_end: str) -> str:
    return asset("index.html").replace("<!--HEAD-->", head).replace("<!--SCRIPTS-->", body_end)


def served_page() -> str:
    """The page as the local server sends it: assets by URL, data fetched from ``/api``."""
    return _fill(
        '<link rel="stylesheet" href="static/view.css">',
        '<script src="static/query.js"></script>\n<script src="static/view.js"></script>',
    )


def _json_block(value: Any) -> str:
    # Inside <script>, only "</" can end the block early; "<\/" is the same JSON string.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")


def embedded_subset(data: ViewData) -> dict[str, Any]:
    """The summary plus as many opened calls as the budgets allow, and what was left out."""
    summary = data.summary()
    calls = summary["calls"]
    order = sorted(
        (c for c in calls if not c["session"]),
        key=lambda c: (c["error"] is None, c["captures"] == 0, c["start"]),
    )
    details: dict[str, Any] = {}
    size = 0
    for call in order:
        if len(details) >= MAX_EMBEDDED_CALLS:
            break
        detail = data.call(call["id"])
        cost = len(_json_block(detail))
        if size + cost > MAX_EMBEDDED_BYTES:
            continue
        details[call["id"]], size = detail, size + cost
    return {
        "summary": summary,
        "calls": details,
        "embedded": {"calls": len(details), "of": len(order), "bytes": size,
                     "max_calls": MAX_EMBEDDED_CALLS, "max_bytes": MAX_EMBEDDED_BYTES},
    }  # fmt: skip


def standalone_page(data: ViewData) -> str:
    """One HTML file with the assets and a bounded subset of the trace inline."""
    head = f"<style>\n{asset('view.css')}\n</style>"
    data_block = _json_block(embedded_subset(data))
    scripts = (
        f'<script type="application/json" id="otel-scope-data">{data_block}</script>\n'
        f"<script>\n{asset('query.js')}\n</script>\n<script>\n{asset('view.js')}\n</script>"
    )
    return _fill(head, scripts)
