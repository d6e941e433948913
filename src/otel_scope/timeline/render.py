"""The unified timeline: one trace's runtime spans and compile-time events as one indented story.

This is the seed's ``IExHelpers.history``: each call is a ``CALL`` line tagged with the mechanism
that made it (``[RUNTIME]``, ``[COMPILE]``, or ``[OTEL]`` for spans from other instrumentations),
followed by what happened inside it in time order (captured locals, chosen lines, expressions,
state changes, messages, nested calls) and closed by ``RETURN`` or ``EXCEPTION``. Everything is
derived from the names in :mod:`otel_scope.semconv`, so any source of the same data renders alike.

The timeline is first built as a list of :class:`TimelineEntry` (what ``--json`` prints) and then
drawn with rich, which leaves out colour when the output is not a terminal.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from rich.console import Console
from rich.text import Text

from otel_scope import semconv
from otel_scope.timeline.errors import TraceNotFound
from otel_scope.timeline.model import EventRecord, SpanRecord, TraceData

MECHANISM_OTEL = "otel"  # spans made by other instrumentations (no otel_scope.mechanism)
_TAGS = {
    semconv.MECHANISM_RUNTIME: "[RUNTIME]",
    semconv.MECHANISM_COMPILE_TIME: "[COMPILE]",
    MECHANISM_OTEL: "[OTEL]",
}
_TAG_STYLES = {
    semconv.MECHANISM_RUNTIME: "cyan",
    semconv.MECHANISM_COMPILE_TIME: "magenta",
    MECHANISM_OTEL: "blue",
}
_KIND_STYLES = {
    "call": "bold",
    "return": "green",
    "exception": "bold red",
    "exception_event": "red",
    "state": "yellow",
    "message_sent": "bold yellow",
    "message_received": "bold yellow",
    "message": "bold yellow",
    "escalation": "bold red",
    "session": "bold",
    "session_end": "bold",
}
# Entries that open or close a span; every other entry is an event inside one.
_BOUNDARY_KINDS = frozenset({"call", "return", "exception", "span", "span_end", "session", "session_end"})
EXCEPTION_EVENT = "exception"  # the SDK's Span.record_exception event name
# Event attributes that say where an event came from rather than what it shows.
_PROVENANCE = (semconv.MECHANISM, semconv.SESSION_ID, semconv.SESSION_NAME, semconv.CALL_ID, semconv.TARGET)


@dataclass
class TimelineEntry:
    """One line of the timeline; ``--json`` prints these as objects."""

    trace_id: str
    span_id: str
    time_ns: int
    offset_ns: int
    depth: int
    kind: str
    mechanism: str
    function: str
    text: str
    line: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


# -- formatting helpers --------------------------------------------------------------------------
def format_duration(ns: int) -> str:
    """A duration for people: ``850 ns``, ``12.4 µs``, ``1.23 ms``, ``4.56 s``."""
    if ns < 1_000:
        return f"{ns} ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.1f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.2f} ms"
    return f"{ns / 1_000_000_000:.2f} s"


def format_offset(ns: int) -> str:
    """Time since trace start: ``+12.345ms`` below ten seconds, ``+12.345s`` above."""
    if ns < 10_000_000_000:
        return f"+{ns / 1_000_000:.3f}ms"
    return f"+{ns / 1_000_000_000:.3f}s"


def format_time(ns: int) -> str:
    """A wall-clock time in the local time zone, to the millisecond."""
    return _dt.datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _value(value: Any) -> str:
    # Captured values are already safe reprs (strings); anything else is shown as Python would.
    return value if isinstance(value, str) else repr(value)


def _mechanism(attributes: dict[str, Any], default: str = MECHANISM_OTEL) -> str:
    value = attributes.get(semconv.MECHANISM)
    known = value in (semconv.MECHANISM_RUNTIME, semconv.MECHANISM_COMPILE_TIME)
    return cast(str, value) if known else default  # (mypy 1.x does not narrow on "in")


def function_name(span: SpanRecord) -> str:
    """The function a span is about: ``code.function.name``, else the span name."""
    return str(span.attributes.get(semconv.CODE_FUNCTION_NAME) or span.name)


def _line(attributes: dict[str, Any]) -> int | None:
    value = attributes.get(semconv.CODE_LINE_NUMBER)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _variables(attributes: dict[str, Any]) -> str:
    # otel_scope.var.<name> holds the value, otel_scope.var.<name>.type its type; names have no dots.
    pairs = [
        f"{key[len(semconv.VAR_PREFIX) :]} = {_value(v)}"
        for key, v in attributes.items()
        if key.startswith(semconv.VAR_PREFIX) and "." not in key[len(semconv.VAR_PREFIX) :]
    ]
    return ", ".join(pairs)


def _count(value: Any) -> int:
    # Counts read back from files or other tools may arrive as strings, or as nonsense.
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def _hit(attributes: dict[str, Any]) -> str:
    hit = attributes.get(semconv.HIT)
    return f"  (hit {hit})" if isinstance(hit, int) and hit > 1 else ""


def _exception_text(attributes: dict[str, Any]) -> str:
    kind = attributes.get(semconv.EXCEPTION_TYPE, "Exception")
    return f"{kind}: {attributes.get(semconv.EXCEPTION_MESSAGE, '')}"


# -- describing spans and events -----------------------------------------------------------------
def _is_session(span: SpanRecord) -> bool:
    return span.name == semconv.SESSION_SPAN_NAME


def _exception_event(span: SpanRecord) -> EventRecord | None:
    """The exception that ended a failed span (shown on its ``EXCEPTION`` line, not twice)."""
    if span.status_code != "ERROR":
        return None
    return next((e for e in reversed(span.events) if e.name == EXCEPTION_EVENT), None)


def _describe_start(span: SpanRecord) -> tuple[str, str]:
    if _is_session(span):
        name = span.attributes.get(semconv.SESSION_NAME) or span.trace_id
        kind = span.attributes.get(semconv.SESSION_KIND)
        return "session", f"SESSION {name}" + (f" ({kind})" if kind else "")
    if semconv.MECHANISM not in span.attributes:
        return "span", f"SPAN {span.name} ({span.kind})"
    args = ", ".join(
        f"{k[len(semconv.ARG_PREFIX) :]}={_value(v)}"
        for k, v in span.attributes.items()
        if k.startswith(semconv.ARG_PREFIX)
    )
    return "call", f"CALL {function_name(span)}({args})"


def _describe_end(span: SpanRecord) -> tuple[str, str]:
    took = f"({format_duration(span.duration_ns)})"
    if _is_session(span):
        name = span.attributes.get(semconv.SESSION_NAME) or span.trace_id
        exit_ = span.attributes.get(semconv.SESSION_EXIT)
        return "session_end", f"END SESSION {name}" + (f" exit {exit_}" if exit_ else "") + f" {took}"
    if span.status_code == "ERROR":
        exc = _exception_event(span)
        what = _exception_text(exc.attributes) if exc is not None else span.status_message or "error"
        return "exception", f"EXCEPTION {function_name(span)} {what} {took}"
    if semconv.MECHANISM not in span.attributes:
        return "span_end", f"END {span.name} {took}"
    result = ""
    if semconv.RETURN_VALUE in span.attributes:
        result = f" -> {_value(span.attributes[semconv.RETURN_VALUE])}"
    if semconv.YIELD_COUNT in span.attributes:
        end = span.attributes.get(semconv.GENERATOR_END, "ended")
        result += f" [generator {end} after {span.attributes[semconv.YIELD_COUNT]} items]"
    return "return", f"RETURN {function_name(span)}{result} {took}"


def _describe_event(event: EventRecord) -> tuple[str, str]:
    a = event.attributes
    line = _line(a)
    at = f"LINE {line}  " if line is not None else ""
    name = event.name
    if name == semconv.EVENT_LOCALS:
        variables = _variables(a)
        return "locals", f"{at}VAR {variables}{_hit(a)}" if variables else f"{at.rstrip()}{_hit(a)}"
    if name == semconv.EVENT_LINE:
        return "line", f"{at.rstrip() or 'LINE ?'}{_hit(a)}"
    if name == semconv.EVENT_EXPRESSION:
        text = a.get(semconv.EXPRESSION_TEXT, "?")
        return "expression", f"{at}EXPR {text} = {_value(a.get(semconv.EXPRESSION_VALUE, '?'))}{_hit(a)}"
    if name == semconv.EVENT_RETURN:
        value = f" {_value(a[semconv.RETURN_VALUE])}" if semconv.RETURN_VALUE in a else ""
        return "return_line", f"{at}RETURN{value}"
    if name == semconv.EVENT_STATE:
        attr = a.get(semconv.STATE_ATTRIBUTE, "?")
        before, after = _value(a.get(semconv.STATE_BEFORE, "?")), _value(a.get(semconv.STATE_AFTER, "?"))
        return "state", f"STATE {attr}: {before} -> {after}"
    if name in (semconv.EVENT_MESSAGE_SENT, semconv.EVENT_MESSAGE_RECEIVED):
        sent = name == semconv.EVENT_MESSAGE_SENT
        peer = a.get(semconv.MESSAGE_TO if sent else semconv.MESSAGE_FROM)
        parts = ["MESSAGE", "sent" if sent else "received"]
        if semconv.MESSAGE_ID in a:
            parts.append(f"#{a[semconv.MESSAGE_ID]}")
        if semconv.MESSAGE_CHANNEL in a:
            parts.append(f"via {a[semconv.MESSAGE_CHANNEL]}")
        if peer:
            parts.append(f"{'to' if sent else 'from'} {peer}")
        summary = f": {a[semconv.MESSAGE_SUMMARY]}" if semconv.MESSAGE_SUMMARY in a else ""
        return ("message_sent" if sent else "message_received"), " ".join(parts) + summary
    if name == semconv.EVENT_ESCALATION:
        calls = a.get(semconv.ESCALATION_CALLS)
        return "escalation", f"ESCALATED {a.get(semconv.ESCALATION_REASON, '')}".rstrip() + (
            f" (next {calls} calls)" if calls is not None else ""
        )
    if name == semconv.EVENT_EXCEPTION_FRAME:
        where = a.get(semconv.CODE_FUNCTION_NAME, "?")
        return "exception_frame", f"FRAME {where} {at}VAR {_variables(a)}".rstrip()
    if name == EXCEPTION_EVENT:
        return "exception_event", "EXCEPTION " + _exception_text(a)
    extra = ", ".join(f"{k}={_value(v)}" for k, v in a.items() if k not in _PROVENANCE)
    return "event", f"EVENT {name}" + (f" {extra}" if extra else "")


# -- building the timeline -----------------------------------------------------------------------
class _Builder:
    """Walks the span tree depth-first, interleaving each span's events and children by time.

    A tree walk (rather than one global sort) keeps every call's lines between its CALL and its
    RETURN even when clocks tie, which happens often with microsecond-precision sources.
    """

    def __init__(self, trace: TraceData) -> None:
        self.trace = trace
        self.start = trace.start_ns
        self.children: dict[str, list[SpanRecord]] = {}
        ids = {s.span_id for s in trace.spans}
        for span in trace.spans:
            if span.parent_span_id and span.parent_span_id in ids:
                self.children.setdefault(span.parent_span_id, []).append(span)

    def entry(
        self, span: SpanRecord, time_ns: int, depth: int, kind: str, mechanism: str, text: str, **kw: Any
    ) -> TimelineEntry:
        return TimelineEntry(
            self.trace.trace_id, span.span_id, time_ns, max(0, time_ns - self.start), depth, kind, mechanism,
            function_name(span), text, **kw,
        )  # fmt: skip

    def event_entry(self, span: SpanRecord, event: EventRecord, depth: int) -> TimelineEntry:
        kind, text = _describe_event(event)
        mechanism = _mechanism(event.attributes, _mechanism(span.attributes))
        return self.entry(
            span,
            event.time_ns,
            depth,
            kind,
            mechanism,
            text,
            line=_line(event.attributes),
            attributes=event.attributes,
        )

    def span_entries(self, span: SpanRecord, depth: int, seen: set[str] | None = None) -> list[TimelineEntry]:
        """``span``'s CALL line, its events and nested calls in time order, and its end line.

        Iterative, with an explicit stack: traced recursion can nest spans deeper than Python's
        own recursion limit allows this function to recurse.
        """
        seen = set() if seen is None else seen
        out: list[TimelineEntry] = []
        stack: list[tuple[int, SpanRecord, EventRecord | None]] = [(depth, span, None)]
        while stack:
            level, current, event = stack.pop()
            if event is not None:
                out.append(self.event_entry(current, event, level))
            elif level < 0:  # the marker pushed below the span's contents: its end line
                kind, text = _describe_end(current)
                out.append(
                    self.entry(
                        current, current.end_ns, -level - 1, kind, _mechanism(current.attributes), text
                    )
                )
            elif current.span_id not in seen:  # a span seen twice means a parent cycle in bad data
                seen.add(current.span_id)
                kind, text = _describe_start(current)
                mechanism = _mechanism(current.attributes)
                out.append(
                    self.entry(
                        current, current.start_ns, level, kind, mechanism, text, attributes=current.attributes
                    )
                )
                consumed = _exception_event(current)
                inner: list[tuple[int, int, tuple[int, SpanRecord, EventRecord | None]]] = [
                    (e.time_ns, 0, (level + 1, current, e)) for e in current.events if e is not consumed
                ]
                inner += [
                    (c.start_ns, 1, (level + 1, c, None)) for c in self.children.get(current.span_id, [])
                ]
                inner.sort(key=lambda x: (x[0], x[1]))
                stack.append((-level - 1, current, None))
                stack.extend(item for _, _, item in reversed(inner))
        return out

    def all_entries(self) -> list[TimelineEntry]:
        seen: set[str] = set()
        entries: list[TimelineEntry] = []
        for root in self.trace.roots():
            entries += self.span_entries(root, 0, seen)
        return entries


def matches_function(span: SpanRecord, pattern: str) -> bool:
    """Whether ``pattern`` selects this span's function for ``--function``.

    A target pattern's ``:`` is read as ``.``; with wildcards (``*?[``) the pattern must match the
    whole qualified name or its tail (``check_*`` matches ``shop.inventory.check_stock``),
    otherwise it must occur in the name.
    """
    name = function_name(span)
    pat = pattern.strip().replace(":", ".")
    if any(c in pat for c in "*?["):
        return fnmatch.fnmatchcase(name, pat) or fnmatch.fnmatchcase(name, "*." + pat)
    return pat in name


def build_timeline(trace: TraceData, function: str | None = None) -> list[TimelineEntry]:
    """The timeline entries of ``trace``; with ``function``, only matching calls and their events,
    indented by how many matching calls enclose them."""
    builder = _Builder(trace)
    entries = builder.all_entries()
    if not function:
        return entries
    spans = {s.span_id: s for s in trace.spans}
    keep = {sid for sid, s in spans.items() if matches_function(s, function)}
    depth_of: dict[str, int] = {}
    for sid in keep:
        depth, parent = 0, spans[sid].parent_span_id
        visited = {sid}
        while parent in spans and parent not in visited:
            visited.add(parent)
            depth += parent in keep
            parent = spans[parent].parent_span_id
        depth_of[sid] = depth
    result = []
    for e in entries:
        if e.span_id in keep:
            e.depth = depth_of[e.span_id] + (0 if e.kind in _BOUNDARY_KINDS else 1)
            result.append(e)
    return result


# -- following messages --------------------------------------------------------------------------
class _Messages:
    """Who sent and who received each message, from message events and span links."""

    def __init__(self, trace: TraceData) -> None:
        self.sent: dict[str, list[tuple[SpanRecord, EventRecord]]] = {}
        self.received: dict[str, list[tuple[SpanRecord, EventRecord]]] = {}
        self.spans = {s.span_id: s for s in trace.spans}
        for span in trace.spans:
            for event in span.events:
                mid = event.attributes.get(semconv.MESSAGE_ID)
                if mid is None:
                    continue
                if event.name == semconv.EVENT_MESSAGE_SENT:
                    self.sent.setdefault(str(mid), []).append((span, event))
                elif event.name == semconv.EVENT_MESSAGE_RECEIVED:
                    self.received.setdefault(str(mid), []).append((span, event))

    def ids(self) -> set[str]:
        ids = set(self.sent) | set(self.received)
        for span in self.spans.values():
            ids.update(
                str(x.attributes[semconv.MESSAGE_ID])
                for x in span.links
                if semconv.MESSAGE_ID in x.attributes
            )
        return ids

    def senders(self, mid: str) -> list[SpanRecord]:
        found = [span for span, _ in self.sent.get(mid, [])]
        for span in self.spans.values():
            for link in span.links:
                if str(link.attributes.get(semconv.MESSAGE_ID)) == mid and link.span_id in self.spans:
                    found.append(self.spans[link.span_id])
        return list({s.span_id: s for s in found}.values())

    def receivers(self, mid: str) -> list[SpanRecord]:
        found = [span for span, _ in self.received.get(mid, [])]
        senders = {s.span_id for s in self.senders(mid)}
        for span in self.spans.values():
            for link in span.links:
                link_mid = link.attributes.get(semconv.MESSAGE_ID)
                if str(link_mid) == mid or (link_mid is None and link.span_id in senders):
                    found.append(span)
        return sorted({s.span_id: s for s in found}.values(), key=lambda s: s.start_ns)

    def of_span(self, span: SpanRecord) -> list[str]:
        """Message IDs a span sent (first) or, failing that, received, in time order."""
        sent = [
            str(e.attributes[semconv.MESSAGE_ID])
            for e in span.events
            if e.name == semconv.EVENT_MESSAGE_SENT and semconv.MESSAGE_ID in e.attributes
        ]
        if sent:
            return sent
        received = [
            str(e.attributes[semconv.MESSAGE_ID])
            for e in span.events
            if e.name == semconv.EVENT_MESSAGE_RECEIVED and semconv.MESSAGE_ID in e.attributes
        ]
        received += [
            str(x.attributes[semconv.MESSAGE_ID]) for x in span.links if semconv.MESSAGE_ID in x.attributes
        ]
        return list(dict.fromkeys(received))


def follow(trace: TraceData, ident: str) -> list[TimelineEntry]:
    """The chain from a message (or a span that sent or received one): sender span, the message,
    each receiving span with everything that happened in it, and onward through messages the
    receivers sent in turn.

    ``ident`` is an ``otel_scope.message.id`` or a span ID (or unique prefix of one). A span
    linked to another span with no message events is followed along the link.
    """
    messages = _Messages(trace)
    builder = _Builder(trace)
    key = ident.strip()
    queue: deque[str] = deque()
    start_span: SpanRecord | None = None
    if key in messages.ids():
        queue.append(key)
    else:
        candidates = [s for s in trace.spans if s.span_id.startswith(key.lower())] if key else []
        if len(candidates) > 1:
            raise TraceNotFound(f"span ID prefix {ident!r} matches {len(candidates)} spans; type more digits")
        if not candidates:
            raise TraceNotFound(
                f"no message or span {ident!r} in trace {trace.trace_id}; --follow takes an "
                f"{semconv.MESSAGE_ID} value or a span ID from this trace"
            )
        start_span = candidates[0]
        queue.extend(messages.of_span(start_span))
    entries: list[TimelineEntry] = []
    if not queue and start_span is not None:
        # No message events: follow span links (sender = linked span, receiver = this span).
        linked = [messages.spans[x.span_id] for x in start_span.links if x.span_id in messages.spans]
        for sender in linked:
            entries += _boundary(builder, sender)
        entries += builder.span_entries(start_span, 1)
        return entries
    done: set[str] = set()
    while queue:
        mid = queue.popleft()
        if mid in done:
            continue
        done.add(mid)
        chain = _message_entries(builder, messages, trace, mid)
        entries += chain
        # Messages the receivers sent in turn continue the chain.
        queue.extend(
            str(e.attributes[semconv.MESSAGE_ID])
            for e in chain
            if e.kind == "message_sent" and semconv.MESSAGE_ID in e.attributes
        )
    return entries


def _boundary(builder: _Builder, span: SpanRecord, sent: EventRecord | None = None) -> list[TimelineEntry]:
    # A sender shown by its CALL line, the send itself, and its RETURN line: the rest of the
    # sender's work is not part of the chain.
    lines = builder.span_entries(span, 1)
    out = [lines[0]]
    if sent is not None:
        out.append(builder.event_entry(span, sent, 2))
    out.append(lines[-1])
    return out


def _message_entries(
    builder: _Builder, messages: _Messages, trace: TraceData, mid: str
) -> list[TimelineEntry]:
    sent_events = messages.sent.get(mid, [])
    received = messages.received.get(mid, [])
    first = sent_events[0] if sent_events else (received[0] if received else None)
    attrs = dict(first[1].attributes) if first else {semconv.MESSAGE_ID: mid}
    senders = messages.senders(mid)
    receivers = messages.receivers(mid)
    sender_names = ", ".join(function_name(s) for s in senders) or attrs.get(semconv.MESSAGE_FROM) or "?"
    receiver_names = ", ".join(function_name(s) for s in receivers) or attrs.get(semconv.MESSAGE_TO) or "?"
    channel = f" via {attrs[semconv.MESSAGE_CHANNEL]}" if semconv.MESSAGE_CHANNEL in attrs else ""
    summary = f": {attrs[semconv.MESSAGE_SUMMARY]}" if semconv.MESSAGE_SUMMARY in attrs else ""
    anchor_span = senders[0] if senders else (receivers[0] if receivers else trace.spans[0])
    # The heading sits at the start of the chain (the sender's call) so offsets read in order.
    anchor_time = senders[0].start_ns if senders else (first[1].time_ns if first else anchor_span.start_ns)
    header = builder.entry(
        anchor_span, anchor_time, 0, "message", _mechanism(attrs, _mechanism(anchor_span.attributes)),
        f"MESSAGE #{mid}{channel} {sender_names} -> {receiver_names}{summary}", attributes=attrs,
    )  # fmt: skip
    entries = [header]
    sent_by = {span.span_id: event for span, event in sent_events}
    for sender in senders:
        entries += _boundary(builder, sender, sent_by.get(sender.span_id))
    for receiver in receivers:
        entries += builder.span_entries(receiver, 1)
    return entries


# -- drawing -------------------------------------------------------------------------------------
def entries_to_json(entries: list[TimelineEntry]) -> list[dict[str, Any]]:
    """The entries as JSON-ready objects (``otel-scope history --json``)."""
    return [asdict(e) for e in entries]


def _header(trace: TraceData) -> list[Text]:
    session = next(
        (s.attributes[semconv.SESSION_NAME] for s in trace.spans if semconv.SESSION_NAME in s.attributes),
        None,
    )
    services = sorted({s.service_name for s in trace.spans if s.service_name})
    counts = {m: 0 for m in _TAGS}
    for span in trace.spans:
        counts[_mechanism(span.attributes)] += 1
    errors = sum(s.status_code == "ERROR" for s in trace.spans)
    first = Text.assemble(("Trace ", "bold"), (trace.trace_id, "bold"))
    if session:
        first.append(f"  session {session!s}")
    if services:
        first.append(f"  service {', '.join(services)}")
    by_mechanism = ", ".join(f"{m} {n}" for m, n in counts.items() if n)
    second = Text(
        f"started {format_time(trace.start_ns)}  duration {format_duration(trace.duration_ns)}  "
        f"spans {len(trace.spans)} ({by_mechanism})" + (f"  errors {errors}" if errors else ""),
        style="dim",
    )
    lines = [first, second]
    dropped = sum(_count(s.attributes.get(semconv.CAPTURES_DROPPED)) for s in trace.spans)
    if dropped:
        reasons = sorted(
            {
                str(s.attributes[semconv.CAPTURES_DROPPED_REASON])
                for s in trace.spans
                if semconv.CAPTURES_DROPPED_REASON in s.attributes
            }
        )
        lines.append(
            Text(
                f"dropped captures: {dropped}" + (f" ({', '.join(reasons)})" if reasons else ""),
                style="yellow",
            )
        )
    lost = sum(_count(s.attributes.get(semconv.SESSION_DROPPED_SPANS)) for s in trace.spans)
    if lost:
        where = [str(r) for s in trace.spans for r in s.attributes.get(semconv.SESSION_DROPPED_REASONS) or ()]
        lines.append(
            Text(f"dropped {lost:,} spans" + (f" ({'; '.join(where)})" if where else ""), style="yellow")
        )
    sdk_dropped = sum(s.dropped_events_count for s in trace.spans)
    if sdk_dropped:
        lines.append(
            Text(
                f"events dropped at the SDK's per-span limit: {sdk_dropped} (the oldest ones)", style="yellow"
            )
        )
    lines += [Text(f"warning: {w}", style="yellow") for w in trace.warnings]
    return lines


def _draw(entry: TimelineEntry) -> Text:
    keyword, _, rest = entry.text.partition(" ")
    return Text.assemble(
        (f"{format_offset(entry.offset_ns):>12}", "dim"),
        " ",
        (f"{_TAGS.get(entry.mechanism, '[OTEL]'):<9}", _TAG_STYLES.get(entry.mechanism, "")),
        " ",
        "  " * entry.depth,
        (keyword, _KIND_STYLES.get(entry.kind, "bold")),
        " " if rest else "",
        rest,
    )


def render_entries(trace: TraceData, entries: list[TimelineEntry], console: Console) -> None:
    """Print the header of ``trace`` and then ``entries``, one line each, never wrapped."""
    for line in _header(trace):
        console.print(line, soft_wrap=True)
    console.print()
    for entry in entries:
        console.print(_draw(entry), soft_wrap=True)


def render_history(trace: TraceData, console: Console, function: str | None = None) -> None:
    """Print the unified timeline of ``trace``, optionally only the calls matching ``function``."""
    entries = build_timeline(trace, function)
    render_entries(trace, entries, console)
    if function and not entries:
        names = sorted({function_name(s) for s in trace.spans if semconv.MECHANISM in s.attributes})
        console.print(
            Text(
                f"no calls matching {function!r}; functions in this trace: {', '.join(names[:12]) or 'none'}"
            ),
            soft_wrap=True,
        )
