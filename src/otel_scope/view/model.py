"""What the web view shows, computed once from a :class:`~otel_scope.timeline.TraceData`.

The page needs two shapes: a **summary** (lanes, calls as bars, messages as arrows; small enough
to load first whatever the trace's size) and a **call** (one span opened: its source annotated
with the values captured on each line, its steps for time travel, state, arguments, return or
exception, attributes). Both are plain JSON-ready dicts, so the local server and the
self-contained HTML file hand the browser exactly the same data.

Times are nanoseconds since the trace's start. Values are shown exactly as they were recorded
(safe reprs made by the capture layer); nothing here evaluates them.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field
from typing import Any

from otel_scope import semconv
from otel_scope.store.records import EventRecord, SpanRecord, TraceData
from otel_scope.timeline.render import function_name

EXCEPTION_EVENT = "exception"  # the SDK's Span.record_exception event name
SESSION_LANE = "session"
# A function's source is shown in full up to this many lines, then cut (with a note): a
# generated or minified function must not make one call's answer megabytes long.
MAX_SOURCE_LINES = 400
# The summary draws at most this many bars (the earliest, plus every call that raised): beyond
# that a browser spends seconds laying out lanes nobody can read; the page says what it left out.
MAX_SUMMARY_CALLS = 20_000
_PROVENANCE = (semconv.MECHANISM, semconv.SESSION_ID)
# Events that carry values seen inside the function (what makes a call worth opening first).
_VALUE_EVENTS = frozenset(
    {semconv.EVENT_LOCALS, semconv.EVENT_LINE, semconv.EVENT_EXPRESSION, semconv.EVENT_EXCEPTION_FRAME}
)


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _variables(attributes: dict[str, Any]) -> dict[str, str]:
    """``otel_scope.var.<name>`` values by name (their ``.type`` companions left out)."""
    prefix = semconv.VAR_PREFIX
    return {
        key[len(prefix) :]: _text(value)
        for key, value in attributes.items()
        if key.startswith(prefix) and "." not in key[len(prefix) :]
    }


def _arguments(span: SpanRecord) -> dict[str, str]:
    prefix = semconv.ARG_PREFIX
    return {k[len(prefix) :]: _text(v) for k, v in span.attributes.items() if k.startswith(prefix)}


def _mechanism(attributes: dict[str, Any]) -> str:
    value = attributes.get(semconv.MECHANISM)
    return value if value in (semconv.MECHANISM_RUNTIME, semconv.MECHANISM_COMPILE_TIME) else "otel"


def lane_of(name: str) -> tuple[str, str]:
    """The component a function belongs to: ``(lane, kind)``.

    A method's lane is its class (``shop.inventory.InventoryChecker``), found as the last dotted
    part before the function that starts with a capital letter (PEP 8 class names); a plain
    function's lane is its module. The trace records no thread names, so the class or module
    that handles a call is the component a reader recognises.
    """
    parts = name.split(".")
    for index in range(len(parts) - 2, -1, -1):
        if parts[index][:1].isupper():
            return ".".join(parts[: index + 1]), "class"
    return (".".join(parts[:-1]) or name), "module"


@dataclass
class ViewData:
    """One trace prepared for the view: the summary, and each call built when first asked for."""

    trace: TraceData
    spans: dict[str, SpanRecord] = field(init=False)
    _calls: dict[str, dict[str, Any]] = field(init=False, default_factory=dict)
    _steps: dict[str, list[dict[str, Any]]] = field(init=False, default_factory=dict)
    _files: dict[str, tuple[list[str], ast.Module | None]] = field(init=False, default_factory=dict)
    _summary: dict[str, Any] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.spans = {s.span_id: s for s in self.trace.spans}
        self.start = self.trace.start_ns
        self.children: dict[str, list[str]] = {}
        for span in self.trace.spans:
            if span.parent_span_id in self.spans:
                self.children.setdefault(span.parent_span_id, []).append(span.span_id)

    def offset(self, time_ns: int) -> int:
        return max(0, time_ns - self.start)

    # -- the summary ---------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        if self._summary is None:
            self._summary = self._build_summary()
        return self._summary

    def _process_key(self, span: SpanRecord) -> str:
        return str(span.resource.get("service.instance.id") or span.service_name or "")

    def _process_labels(self) -> dict[str, str]:
        """A short name per process of the trace: its pid when a session span recorded one,
        else its order of appearance (child processes share the resource but not its
        ``service.instance.id``, which the SDK draws per process)."""
        labels: dict[str, str] = {}
        for span in self.trace.spans:
            key = self._process_key(span)
            pid = span.attributes.get("process.pid") if span.name == semconv.SESSION_SPAN_NAME else None
            if pid is not None:
                labels[key] = f"pid {pid}"
            elif key not in labels:
                labels[key] = f"process {len(labels) + 1}"
        return labels

    def _build_summary(self) -> dict[str, Any]:
        trace = self.trace
        processes = self._process_labels()
        several = len(processes) > 1
        lanes: dict[str, dict[str, Any]] = {}
        calls: list[dict[str, Any]] = []
        lane_by_span: dict[str, str] = {}
        for span in trace.spans:  # start-time order: a parent is laned before its children
            if span.name == semconv.SESSION_SPAN_NAME:
                lane, kind = SESSION_LANE, "session"
            elif semconv.CODE_FUNCTION_NAME in span.attributes or semconv.MECHANISM in span.attributes:
                lane, kind = lane_of(function_name(span))
            else:  # another instrumentation's span (HTTP client, DB): it runs in its caller's lane
                parent_lane = lane_by_span.get(span.parent_span_id or "")
                lane, kind = (parent_lane, "") if parent_lane else (span.name, "span")
            if several and lane != SESSION_LANE:
                lane = f"{lane} ({processes[self._process_key(span)]})"
            lane_by_span[span.span_id] = lane
            if lane not in lanes:
                lanes[lane] = {"id": lane, "label": lane, "kind": kind or "span", "calls": 0}
            lanes[lane]["calls"] += 1
            calls.append(self._call_summary(span, lane))
        total = len(calls)
        if total > MAX_SUMMARY_CALLS:
            calls = [c for i, c in enumerate(calls) if i < MAX_SUMMARY_CALLS or c["error"]]
            kept = {c["id"] for c in calls}
            lanes = {k: v for k, v in lanes.items() if any(c["lane"] == k for c in calls)}
        else:
            kept = set(self.spans)
        messages = [m for m in self._messages() if m["from"] in kept or m["to"] in kept]
        errors = [c["id"] for c in calls if c["error"]]
        session = next((s for s in trace.spans if s.name == semconv.SESSION_SPAN_NAME), None)
        dropped = sum(_int(s.attributes.get(semconv.CAPTURES_DROPPED)) or 0 for s in trace.spans)
        return {
            "trace_id": trace.trace_id,
            "session": (session.attributes.get(semconv.SESSION_NAME) if session else None),
            "services": sorted({s.service_name for s in trace.spans if s.service_name}),
            "start_ns": trace.start_ns,
            "duration_ns": trace.duration_ns,
            "span_count": len(trace.spans),
            "lanes": list(lanes.values()),
            "calls": calls,
            "calls_total": total,
            "messages": messages,
            "errors": errors,
            "dropped_captures": dropped,
            "sdk_dropped_events": sum(s.dropped_events_count for s in trace.spans),
            "warnings": list(trace.warnings),
        }

    def _call_summary(self, span: SpanRecord, lane: str) -> dict[str, Any]:
        exc = _exception(span)
        return {
            "id": span.span_id,
            "parent": span.parent_span_id if span.parent_span_id in self.spans else None,
            "name": function_name(span),
            "lane": lane,
            "start": self.offset(span.start_ns),
            "end": self.offset(span.end_ns),
            "mechanism": _mechanism(span.attributes),
            "error": _exception_text(exc)
            if exc
            else (span.status_message or None)
            if span.status_code == "ERROR"
            else None,
            "captures": sum(e.name in _VALUE_EVENTS for e in span.events),
            "session": span.name == semconv.SESSION_SPAN_NAME,
        }

    def _messages(self) -> list[dict[str, Any]]:
        """Every hand-off as an arrow: from the sending span (at the send) to each receiver.

        A receiver is found by its ``received`` event with the same message ID, or by a span link
        to the sender (receivers that are not the sender's children get one); a link with no
        message events still becomes an arrow, so hand-offs from other instrumentations show.
        """
        sent: dict[str, tuple[SpanRecord, EventRecord]] = {}
        received: dict[str, list[tuple[SpanRecord, int]]] = {}
        for span in self.trace.spans:
            for event in span.events:
                mid = event.attributes.get(semconv.MESSAGE_ID)
                if mid is None:
                    continue
                if event.name == semconv.EVENT_MESSAGE_SENT:
                    sent.setdefault(str(mid), (span, event))
                elif event.name == semconv.EVENT_MESSAGE_RECEIVED:
                    received.setdefault(str(mid), []).append((span, event.time_ns))
        arrows: list[dict[str, Any]] = []
        covered: set[tuple[str, str]] = set()
        for mid in sorted(set(sent) | set(received)):
            sender = sent.get(mid)
            attrs = sender[1].attributes if sender else {}
            for receiver, at in received.get(mid, []) or [(None, None)]:  # type: ignore[list-item]
                if sender is None and receiver is None:
                    continue
                if sender is not None and receiver is not None:
                    covered.add((sender[0].span_id, receiver.span_id))
                rattrs = next(
                    (
                        e.attributes
                        for e in (receiver.events if receiver else [])
                        if e.attributes.get(semconv.MESSAGE_ID) == mid
                    ),
                    {},
                )
                arrows.append(
                    {
                        "id": mid,
                        "channel": attrs.get(semconv.MESSAGE_CHANNEL) or rattrs.get(semconv.MESSAGE_CHANNEL),
                        "summary": _text(
                            attrs.get(semconv.MESSAGE_SUMMARY, rattrs.get(semconv.MESSAGE_SUMMARY, ""))
                        ),
                        "from": sender[0].span_id if sender else None,
                        "from_t": self.offset(sender[1].time_ns) if sender else None,
                        "to": receiver.span_id if receiver else None,
                        "to_t": self.offset(at) if at is not None else None,
                    }
                )
        for span in self.trace.spans:
            for link in span.links:
                if link.span_id in self.spans and (link.span_id, span.span_id) not in covered:
                    covered.add((link.span_id, span.span_id))
                    mid = link.attributes.get(semconv.MESSAGE_ID)
                    arrows.append(
                        {
                            "id": str(mid) if mid is not None else f"link-{link.span_id[:6]}",
                            "channel": link.attributes.get(semconv.MESSAGE_CHANNEL) or "span link",
                            "summary": "",
                            "from": link.span_id,
                            "from_t": self.offset(self.spans[link.span_id].start_ns),
                            "to": span.span_id,
                            "to_t": self.offset(span.start_ns),
                        }
                    )
        return arrows

    # -- one call ------------------------------------------------------------------------------
    def call(self, span_id: str) -> dict[str, Any] | None:
        """The opened call, or ``None`` for a span ID this trace does not hold."""
        if span_id not in self.spans:
            return None
        if span_id not in self._calls:
            self._calls[span_id] = self._build_call(self.spans[span_id])
        return self._calls[span_id]

    def steps(self, span_id: str) -> list[dict[str, Any]]:
        """The call's steps alone (what search reads): no source file is opened for them."""
        if span_id not in self._steps:
            span = self.spans[span_id]
            self._steps[span_id] = self._build_steps(span, _arguments(span), _state(span), _exception(span))
        return self._steps[span_id]

    def _build_call(self, span: SpanRecord) -> dict[str, Any]:
        arguments = _arguments(span)
        exc = _exception(span)
        state = _state(span)
        steps = self.steps(span.span_id)
        return {
            "id": span.span_id,
            "name": function_name(span),
            "span_name": span.name,
            "kind": span.kind,
            "parent": span.parent_span_id if span.parent_span_id in self.spans else None,
            "children": self.children.get(span.span_id, []),
            "start": self.offset(span.start_ns),
            "end": self.offset(span.end_ns),
            "mechanism": _mechanism(span.attributes),
            "status": span.status_code,
            "arguments": arguments,
            "return": _text(span.attributes[semconv.RETURN_VALUE])
            if semconv.RETURN_VALUE in span.attributes
            else None,
            "exception": {
                "type": _text(exc.attributes.get(semconv.EXCEPTION_TYPE, "Exception")),
                "message": _text(exc.attributes.get(semconv.EXCEPTION_MESSAGE, "")),
                "stacktrace": _text(exc.attributes.get("exception.stacktrace", "")),
            }
            if exc
            else None,
            "state": state,
            "attributes": {k: _text(v) for k, v in span.attributes.items()},
            "links": [{"span": x.span_id, "trace": x.trace_id, **x.attributes} for x in span.links],
            "steps": steps,
            "source": self._source(span),
            "dropped_captures": _int(span.attributes.get(semconv.CAPTURES_DROPPED)) or 0,
            "dropped_reason": span.attributes.get(semconv.CAPTURES_DROPPED_REASON),
        }

    def _build_steps(
        self,
        span: SpanRecord,
        arguments: dict[str, str],
        state: list[dict[str, str]],
        exc: EventRecord | None,
    ) -> list[dict[str, Any]]:
        """The call's recorded moments in time order, each with the variables it set.

        Stepping replays these: the variables panel at step *i* is every ``set`` of steps 0..i.
        Step 0 is the call itself (its arguments and the state of ``self`` before it); the last is
        its return or exception.
        """
        entry = {f"self.{s['attribute']}": s["before"] for s in state}
        steps: list[dict[str, Any]] = [
            {
                "kind": "call",
                "t": self.offset(span.start_ns),
                "line": _int(span.attributes.get(semconv.CODE_LINE_NUMBER)),
                "text": f"call {function_name(span)}",
                "set": {**arguments, **entry},
            }
        ]
        for event in span.events:
            if event is exc:
                continue
            steps.append(self._event_step(event))
        end: dict[str, Any] = {"kind": "exception" if exc else "return", "t": self.offset(span.end_ns)}
        if exc is not None:
            end["text"] = "raised " + _exception_text(exc)
            end["line"] = _exception_line(exc, span)
            end["set"] = {"exception": _exception_text(exc)}
        elif span.attributes.get(semconv.CANCELLED) is True:  # not an error: see emitted-data.md
            end["text"], end["set"] = "cancelled", {}
        elif span.attributes.get(semconv.UNFINISHED):  # its process ended during the call
            end["text"], end["set"] = f"still running at {span.attributes[semconv.UNFINISHED]}", {}
        else:
            value = span.attributes.get(semconv.RETURN_VALUE)
            end["text"] = "returned" + (f" {_text(value)}" if value is not None else "")
            end["set"] = {"return": _text(value)} if value is not None else {}
        steps.append(end)
        for index, step in enumerate(steps):
            step["index"] = index
        return steps

    def _event_step(self, event: EventRecord) -> dict[str, Any]:
        a = event.attributes
        step: dict[str, Any] = {
            "t": self.offset(event.time_ns),
            "line": _int(a.get(semconv.CODE_LINE_NUMBER)),
            "hit": _int(a.get(semconv.HIT)),
            "set": {},
        }
        name = event.name
        if name == semconv.EVENT_LOCALS:
            step["kind"], step["set"] = "locals", _variables(a)
            step["text"] = ", ".join(f"{k} = {v}" for k, v in step["set"].items())
        elif name == semconv.EVENT_LINE:
            step["kind"], step["text"] = "line", "line reached"
        elif name == semconv.EVENT_EXPRESSION:
            text = _text(a.get(semconv.EXPRESSION_TEXT, "?"))
            value = _text(a.get(semconv.EXPRESSION_VALUE, "?"))
            step["kind"], step["text"], step["set"] = "expression", f"{text} = {value}", {text: value}
        elif name == semconv.EVENT_RETURN:
            value = _text(a.get(semconv.RETURN_VALUE, ""))
            step["kind"], step["text"], step["set"] = "return_line", f"return {value}", {"return": value}
        elif name == semconv.EVENT_STATE:
            attr = _text(a.get(semconv.STATE_ATTRIBUTE, "?"))
            before, after = _text(a.get(semconv.STATE_BEFORE, "?")), _text(a.get(semconv.STATE_AFTER, "?"))
            step["kind"], step["text"] = "state", f"self.{attr}: {before} -> {after}"
            step["set"] = {f"self.{attr}": after}
        elif name in (semconv.EVENT_MESSAGE_SENT, semconv.EVENT_MESSAGE_RECEIVED):
            sent = name == semconv.EVENT_MESSAGE_SENT
            step["kind"] = "message_sent" if sent else "message_received"
            step["message"] = _text(a.get(semconv.MESSAGE_ID, ""))
            peer = a.get(semconv.MESSAGE_TO if sent else semconv.MESSAGE_FROM)
            step["text"] = (
                f"{'sent' if sent else 'received'} #{step['message']}"
                + (f" via {a[semconv.MESSAGE_CHANNEL]}" if semconv.MESSAGE_CHANNEL in a else "")
                + (f" {'to' if sent else 'from'} {peer}" if peer else "")
                + (f": {_text(a[semconv.MESSAGE_SUMMARY])}" if semconv.MESSAGE_SUMMARY in a else "")
            )
        elif name == EXCEPTION_EVENT:
            step["kind"], step["text"] = "exception_event", "caught " + _exception_text(event)
        elif name == semconv.EVENT_ESCALATION:
            calls = a.get(semconv.ESCALATION_CALLS)
            reason = _text(a.get(semconv.ESCALATION_REASON, ""))
            step["kind"] = "escalation"
            step["text"] = f"escalated on {reason}" + (
                f": its next {calls} calls get compile-time locals" if calls else ""
            )
        elif name == semconv.EVENT_EXCEPTION_FRAME:
            where = _text(a.get(semconv.CODE_FUNCTION_NAME, "?"))
            step["kind"], step["set"] = "exception_frame", _variables(a)
            step["text"] = f"frame {where}: " + ", ".join(f"{k} = {v}" for k, v in step["set"].items())
        else:
            extra = ", ".join(f"{k}={_text(v)}" for k, v in a.items() if k not in _PROVENANCE)
            step["kind"], step["text"] = "event", f"{name}" + (f" {extra}" if extra else "")
        return step

    def _file(self, path: str) -> tuple[list[str], ast.Module | None] | str:
        """A source file's lines and syntax tree, read and parsed once per view (or why not)."""
        if path not in self._files:
            try:
                with open(path, encoding="utf-8") as fh:
                    text = fh.read()
            except (OSError, UnicodeDecodeError) as exc:
                return f"cannot read {path} here ({exc.__class__.__name__})"
            try:
                tree: ast.Module | None = ast.parse(text)
            except SyntaxError:
                tree = None
            self._files[path] = (text.splitlines(), tree)
        return self._files[path]

    def _source(self, span: SpanRecord) -> dict[str, Any]:
        """The function's source lines, read from ``code.file.path`` (or why they cannot be shown).

        The file is read when a call is first opened, so an edited file shows its current text:
        the ``note`` says so when the recorded ``def`` line no longer starts a function.
        """
        path = span.attributes.get(semconv.CODE_FILE_PATH)
        def_line = _int(span.attributes.get(semconv.CODE_LINE_NUMBER))
        if not path or def_line is None:
            return {"path": path, "missing": "this span records no source file and line"}
        found = self._file(str(path))
        if isinstance(found, str):
            return {"path": path, "missing": found}
        lines, tree = found
        first, last, note = def_line, min(len(lines), def_line + 40), None
        if tree is None:
            note = "the file no longer parses; showing 40 lines from the recorded def line"
        else:
            node = next(
                (
                    n
                    for n in ast.walk(tree)
                    if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and min([n.lineno, *(d.lineno for d in n.decorator_list)]) <= def_line <= n.lineno
                ),
                None,
            )
            if node is None:
                note = f"no function starts at line {def_line} of the file now (edited since the run?)"
            else:
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                last = node.end_lineno or last
        if last - first + 1 > MAX_SOURCE_LINES:
            last = first + MAX_SOURCE_LINES - 1
            note = f"the function is longer than {MAX_SOURCE_LINES} lines; the rest is not shown"
        return {"path": os.fspath(path), "first_line": first, "lines": lines[first - 1 : last], "note": note}


def _exception(span: SpanRecord) -> EventRecord | None:
    """The exception that ended a failed span."""
    if span.status_code != "ERROR":
        return None
    return next((e for e in reversed(span.events) if e.name == EXCEPTION_EVENT), None)


def _exception_text(event: EventRecord) -> str:
    kind = _text(event.attributes.get(semconv.EXCEPTION_TYPE, "Exception"))
    return f"{kind}: {_text(event.attributes.get(semconv.EXCEPTION_MESSAGE, ''))}"


def _exception_line(exc: EventRecord, span: SpanRecord) -> int | None:
    """The line of the function that raised, read from the stack trace's frame in its file."""
    path = span.attributes.get(semconv.CODE_FILE_PATH)
    stack = _text(exc.attributes.get("exception.stacktrace", ""))
    line = None
    for text in stack.splitlines():
        text = text.strip()
        if path and text.startswith(f'File "{path}", line '):
            line = _int(text.split(", line ", 1)[1].split(",", 1)[0])
    return line


def _state(span: SpanRecord) -> list[dict[str, str]]:
    """The attributes of ``self`` the call changed, before and after."""
    return [
        {
            "attribute": _text(e.attributes.get(semconv.STATE_ATTRIBUTE, "?")),
            "before": _text(e.attributes.get(semconv.STATE_BEFORE, "?")),
            "after": _text(e.attributes.get(semconv.STATE_AFTER, "?")),
        }
        for e in span.events
        if e.name == semconv.EVENT_STATE
    ]
