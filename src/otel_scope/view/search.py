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

from otel_scope import semconv
from otel_scope.store.records import SpanRecord
from otel_scope.timeline.query import Where, compile_where
from otel_scope.timeline.render import function_name
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
    for span in data.trace.spans:  # every call, also those the summary leaves without a bar
        if _may_set(span, where.names):
            matches += _call_matches(where, span.span_id, function_name(span), data.steps(span.span_id))
    matches.sort(key=lambda m: m["t"])
    return {"query": text, "count": len(matches), "shown": len(matches[:MAX_MATCHES]),
            "matches": matches[:MAX_MATCHES]}  # fmt: skip


# Steps that set names not spelled in their attribute keys: the end of every call sets
# "return" or "exception", a state change sets its attribute, an expression its source text.
_ALWAYS = frozenset({"return", "exception"})
_NAMED_BY_VALUE = frozenset({semconv.EVENT_STATE, semconv.EVENT_EXPRESSION})


def _may_set(span: SpanRecord, names: frozenset[str]) -> bool:
    """Whether any step of ``span`` can set one of ``names``: a cheap test on attribute keys, so
    a search builds steps only for the calls it could match (a match needs such a step)."""
    if names & _ALWAYS:
        return True
    if any(semconv.ARG_PREFIX + n in span.attributes for n in names):
        return True
    return any(
        e.name in _NAMED_BY_VALUE or any(semconv.VAR_PREFIX + n in e.attributes for n in names)
        for e in span.events
    )


def _call_matches(where: Where, call: str, name: str, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    env: dict[str, str] = {}
    found = []
    for step in steps:
        values = step_values(step)
        env.update(values)
        if where.names.intersection(values) and where.matches(env):
            found.append(
                {
                    "call": call,
                    "name": name,
                    "step": step["index"],
                    "line": step.get("line"),
                    "t": step["t"],
                    "text": step.get("text", ""),
                }
            )
    return found
