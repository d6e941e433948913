"""Searching one trace by value (``remaining < 0``) with the ``--where`` language of the terminal.

The condition is compiled by :func:`otel_scope.timeline.query.compile_where`, so the page and
``otel-scope history --where`` read the same text the same way. The view adds one thing: a step
is judged on everything its call had recorded *up to* that step (its arguments and the values
set by earlier steps), and it matches only when it set one of the names the condition reads, so
each match is the moment a variable took the value. ``static/query.js`` is the same rule for the
self-contained HTML file, which has no server to ask.
"""

from __future__ import annotations

from typing import Any

from otel_scope.timeline.query import Where, compile_where
from otel_scope.view.model import ViewData

MAX_MATCHES = 200


def step_values(step: dict[str, Any]) -> dict[str, str]:
    """The names one step sets, as the condition reads them.

    A state change is shown as ``self.<attribute>`` and is also readable by the bare attribute
    name, which is what ``history --where`` calls it.
    """
    values = dict(step.get("set") or {})
    if step.get("kind") == "state":
        for key, value in step["set"].items():
            values[key.removeprefix("self.")] = value
    return values


def search(data: ViewData, text: str) -> dict[str, Any]:
    """Matching steps, in time order: ``{"query", "matches": [...], "count", "shown"}``.

    Raises :class:`~otel_scope.timeline.query.QueryError` (one line) for malformed text.
    """
    where = compile_where(text)
    matches: list[dict[str, Any]] = []
    for call in data.summary()["calls"]:
        matches += _call_matches(where, call, data.steps(call["id"]))
    matches.sort(key=lambda m: m["t"])
    return {"query": text, "count": len(matches), "shown": len(matches[:MAX_MATCHES]),
            "matches": matches[:MAX_MATCHES]}  # fmt: skip


def _call_matches(where: Where, call: dict[str, Any], steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    env: dict[str, str] = {}
    found = []
    for step in steps:
        values = step_values(step)
        env.update(values)
        if where.names.intersection(values) and where.matches(env):
            found.append(
                {
                    "call": call["id"],
                    "name": call["name"],
                    "step": step["index"],
                    "line": step.get("line"),
                    "t": step["t"],
                    "text": step.get("text", ""),
                }
            )
    return found
