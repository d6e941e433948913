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
import heapq
import itertools
import json
import linecache
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Protocol, cast

from rich.console import Console

from otel_scope import semconv
from otel_scope.store.records import EventRecord, SpanRecord, TraceData, TraceStats, as_count
from otel_scope.timeline.errors import TraceNotFound
from otel_scope.timeline.query import Where, captured_values
from otel_scope.timeline.reader import SpanHead, TraceReader
from otel_scope.timeline.staging import staged

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
    "cancelled": "yellow",
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
_BOUNDARY_KINDS = frozenset(
    {"call", "return", "exception", "cancelled", "span", "span_end", "session", "session_end"}
)
EXCEPTION_EVENT = "exception"  # the SDK's Span.record_exception event name
_RECEIVERS = frozenset({"self", "cls"})
_NO_VALUE = object()
# Event attributes that say where an event came from rather than what it shows.
_PROVENANCE = (semconv.MECHANISM, semconv.SESSION_ID, semconv.SESSION_NAME, semconv.TARGET)


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
    """Time since trace start: ``+12.345ms`` below ten seconds, ``+13.113456s`` above.

    Past ten seconds the offset keeps microseconds: at millisecond precision every event of a
    short call shows the same time, which hides their order.
    """
    if ns < 10_000_000_000:
        return f"+{ns / 1_000_000:.3f}ms"
    return f"+{ns // 1_000_000_000}.{ns % 1_000_000_000 // 1_000:06d}s"


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


def _variables(attributes: dict[str, Any], fmt: Callable[[Any], str] = _value) -> str:
    # otel_scope.var.<name> holds the value, otel_scope.var.<name>.type its type; names have no dots.
    pairs = [
        f"{key[len(semconv.VAR_PREFIX) :]} = {fmt(v)}"
        for key, v in attributes.items()
        if key.startswith(semconv.VAR_PREFIX) and "." not in key[len(semconv.VAR_PREFIX) :]
    ]
    return ", ".join(pairs)


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


def _describe_start(
    span: SpanRecord, fmt: Callable[[Any], str] = _value, full: bool = True
) -> tuple[str, str]:
    if _is_session(span):
        name = span.attributes.get(semconv.SESSION_NAME) or span.trace_id
        kind = span.attributes.get(semconv.SESSION_KIND)
        return "session", f"SESSION {name}" + (f" ({kind})" if kind else "")
    if span.name == semconv.PROCESS_SPAN_NAME:
        return "span", f"PROCESS pid {span.attributes.get('process.pid')}"
    if semconv.MECHANISM not in span.attributes:
        return "span", f"SPAN {span.name} ({span.kind})"
    # The runtime wrapper never captures the receiver and compile time does: leaving self/cls
    # off (unless --full) renders a call the same way whichever mechanism recorded it.
    args = ", ".join(
        f"{k[len(semconv.ARG_PREFIX) :]}={fmt(v)}"
        for k, v in span.attributes.items()
        if k.startswith(semconv.ARG_PREFIX) and (full or k[len(semconv.ARG_PREFIX) :] not in _RECEIVERS)
    )
    return "call", f"CALL {function_name(span)}({args})"


def _return_value(span: SpanRecord) -> Any:
    """The span's return value; for a compile-time call, the value its last return line recorded."""
    if semconv.RETURN_VALUE in span.attributes:
        return span.attributes[semconv.RETURN_VALUE]
    returns = [
        e for e in span.events if e.name == semconv.EVENT_RETURN and semconv.RETURN_VALUE in e.attributes
    ]
    return returns[-1].attributes[semconv.RETURN_VALUE] if returns else _NO_VALUE


def _describe_end(span: SpanRecord, fmt: Callable[[Any], str] = _value) -> tuple[str, str]:
    took = f"({format_duration(span.duration_ns)})"
    if _is_session(span):
        name = span.attributes.get(semconv.SESSION_NAME) or span.trace_id
        exit_ = span.attributes.get(semconv.SESSION_EXIT)
        return "session_end", f"END SESSION {name}" + (f" exit {exit_}" if exit_ else "") + f" {took}"
    if span.status_code == "ERROR":
        exc = _exception_event(span)
        what = _exception_text(exc.attributes) if exc is not None else span.status_message or "error"
        return "exception", f"EXCEPTION {function_name(span)} {what} {took}"
    if span.attributes.get(semconv.CANCELLED) is True:  # asyncio cancelled it: not an error
        return "cancelled", f"CANCELLED {function_name(span)} {took}"
    unfinished = span.attributes.get(semconv.UNFINISHED)
    if unfinished:  # still running when the process ended: its span ended then
        return "cancelled", f"UNFINISHED {function_name(span)} at {unfinished} {took}"
    if span.name == semconv.PROCESS_SPAN_NAME:  # a forked child's own counts, at its exit
        left = as_count(span.attributes.get(semconv.SAMPLING_SAMPLED_OUT))
        lost = as_count(span.attributes.get(semconv.SESSION_DROPPED_SPANS))
        counts = (f", {left:,} calls left out by sampling" if left else "") + (
            f", {lost:,} spans lost" if lost else ""
        )
        return "span_end", f"END PROCESS pid {span.attributes.get('process.pid')}{counts} {took}"
    if semconv.MECHANISM not in span.attributes:
        return "span_end", f"END {span.name} {took}"
    value = _return_value(span)
    result = "" if value is _NO_VALUE else f" -> {fmt(value)}"
    if semconv.YIELD_COUNT in span.attributes:
        end = span.attributes.get(semconv.GENERATOR_END, "ended")
        result += f" [generator {end} after {span.attributes[semconv.YIELD_COUNT]} items]"
    return "return", f"RETURN {function_name(span)}{result} {took}"


def _describe_event(
    event: EventRecord, fmt: Callable[[Any], str] = _value, path: str = ""
) -> tuple[str, str]:
    """The kind and text of one event; ``path`` is the call's source file, for bare line events."""
    a = event.attributes
    line = _line(a)
    at = f"LINE {line}  " if line is not None else ""
    name = event.name
    if name == semconv.EVENT_LOCALS:
        variables = _variables(a, fmt)
        return "locals", f"{at}VAR {variables}{_hit(a)}" if variables else f"{at.rstrip()}{_hit(a)}"
    if name == semconv.EVENT_LINE:
        # A bare line number says little: show the source text when the file is at hand.
        source = linecache.getline(path, line).strip() if path and line is not None else ""
        return "line", f"{at.rstrip() or 'LINE ?'}{'  ' + source if source else ''}{_hit(a)}"
    if name == semconv.EVENT_EXPRESSION:
        text = a.get(semconv.EXPRESSION_TEXT, "?")
        return "expression", f"{at}EXPR {text} = {fmt(a.get(semconv.EXPRESSION_VALUE, '?'))}{_hit(a)}"
    if name == semconv.EVENT_RETURN:
        value = f" {fmt(a[semconv.RETURN_VALUE])}" if semconv.RETURN_VALUE in a else ""
        return "return_line", f"{at}RETURN{value}"
    if name == semconv.EVENT_STATE:
        attr = a.get(semconv.STATE_ATTRIBUTE, "?")
        before, after = fmt(a.get(semconv.STATE_BEFORE, "?")), fmt(a.get(semconv.STATE_AFTER, "?"))
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
        return "exception_frame", f"FRAME {where} {at}VAR {_variables(a, fmt)}".rstrip()
    if name == EXCEPTION_EVENT:
        return "exception_event", "EXCEPTION " + _exception_text(a)
    extra = ", ".join(f"{k}={fmt(v)}" for k, v in a.items() if k not in _PROVENANCE)
    return "event", f"EVENT {name}" + (f" {extra}" if extra else "")


# -- building the timeline -----------------------------------------------------------------------
class SpanTree(Protocol):
    """What the timeline walk needs from a trace: its roots, orphans and each call's children,
    each in start order. :class:`~otel_scope.timeline.reader.TraceReader` answers from indexes;
    :class:`MemoryTree` from a :class:`TraceData` already in memory (:func:`build_timeline`)."""

    trace_id: str

    def roots(self) -> Iterator[SpanRecord]: ...

    def orphans(self) -> Iterator[SpanRecord]: ...

    def children(self, span_id: str) -> Iterator[SpanRecord]: ...

    def child_heads(self, span_id: str) -> Iterator[SpanHead]: ...


class MemoryTree:
    """A :class:`SpanTree` over a trace in memory."""

    def __init__(self, trace: TraceData) -> None:
        self.trace_id = trace.trace_id
        self.spans = {s.span_id: s for s in trace.spans}
        self._children: dict[str, list[SpanRecord]] = {}
        for span in trace.spans:  # already in start order
            if span.parent_span_id and span.parent_span_id in self.spans:
                self._children.setdefault(span.parent_span_id, []).append(span)

    def roots(self) -> Iterator[SpanRecord]:
        return (s for s in self.spans.values() if not s.parent_span_id)

    def orphans(self) -> Iterator[SpanRecord]:
        return (s for s in self.spans.values() if s.parent_span_id and s.parent_span_id not in self.spans)

    def children(self, span_id: str) -> Iterator[SpanRecord]:
        return iter(self._children.get(span_id, ()))

    def child_heads(self, span_id: str) -> Iterator[SpanHead]:
        return map(SpanHead.of, self._children.get(span_id, ()))


@dataclass(frozen=True)
class View:
    """How much of the timeline to show: ``history``'s narrowing options.

    ``since_ns``/``until_ns`` are offsets from the trace start; ``depth`` hides lines nested more
    than that many levels below the roots; ``fold`` folds runs of calls to one function into one
    line; ``full`` keeps every value (no ``@N`` references) and the receiver of every call.
    """

    depth: int | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    fold: bool = True
    full: bool = False
    dedupe: bool = False


FOLD_MIN = 10  # a run of this many calls to one function in a row becomes one line
_DEDUPE_MIN = 60  # values at least this long are shown once, then as @N
_DEDUPE_CAP = 50_000  # remembered values (hashes), so memory stays bounded


class _Values:
    """Formats captured values; with dedupe, a long value seen before becomes ``@N``.

    The first occurrence reads ``@N=Environment(...)``; later ones ``@N``. Only hashes are kept.
    """

    def __init__(self, dedupe: bool) -> None:
        self.dedupe = dedupe
        self.seen: OrderedDict[int, int] = OrderedDict()
        self.refs = itertools.count(1)

    def __call__(self, value: Any) -> str:
        text = _value(value)
        if not self.dedupe or len(text) < _DEDUPE_MIN:
            return text
        key = hash(text)
        ref = self.seen.get(key)
        if ref is not None:
            self.seen.move_to_end(key)
            return f"@{ref}"
        ref = self.seen[key] = next(self.refs)
        if len(self.seen) > _DEDUPE_CAP:
            self.seen.popitem(last=False)
        return f"@{ref}={text}"


@dataclass
class _Fold:
    """A run of consecutive sibling calls to one function, shown as one line (only its first call
    is decoded; the others are counted from their heads)."""

    first: SpanRecord
    calls: int = 0
    raised: int = 0
    total_ns: int = 0
    end_ns: int = 0
    slowest: SpanHead | None = None
    first_raised: str | None = None  # its span ID
    orphans: bool = False  # the calls' parent is not in the trace

    def add(self, span: SpanHead) -> None:
        self.calls += 1
        took = span.duration_ns
        self.total_ns += took
        if span.end_ns > self.end_ns:
            self.end_ns = span.end_ns
        if span.status_code == "ERROR":
            self.raised += 1
            self.first_raised = self.first_raised or span.span_id
        if self.slowest is None or took > self.slowest.duration_ns:
            self.slowest = span

    def text(self) -> str:
        raised = f", {self.raised:,} raised (first #{self.first_raised})" if self.first_raised else ""
        slowest = self.slowest.duration_ns if self.slowest else self.first.duration_ns
        slowest_id = self.slowest.span_id if self.slowest else self.first.span_id
        orphans = f"  [parent #{self.first.parent_span_id} not in this trace]" if self.orphans else ""
        return (
            f"CALL {function_name(self.first)} × {self.calls:,}{raised}  "
            f"(total {format_duration(self.total_ns)}, slowest {format_duration(slowest)} "
            f"#{slowest_id}){orphans}"
        )


def _fold_key(span: SpanHead) -> tuple[bool, str, str | None]:
    return span.instrumented, span.function, span.parent_span_id


def _folded(children: Iterator[SpanHead], orphans: bool = False) -> Iterator[SpanRecord | _Fold]:
    """Children as they come, except runs of ``FOLD_MIN`` or more calls to one function (with
    one parent: orphans fold by the parent they are missing)."""
    for _, run in itertools.groupby(children, key=_fold_key):
        group = iter(run)
        head = list(itertools.islice(group, FOLD_MIN))
        if len(head) < FOLD_MIN or not head[0].instrumented:
            yield from (span.record() for span in head)
            yield from (span.record() for span in group)
            continue
        fold = _Fold(head[0].record(), orphans=orphans)
        for span in itertools.chain(head, group):
            fold.add(span)
        yield fold


class _Walker:
    """Walks the span tree depth-first, interleaving each span's events and children by time.

    A tree walk (rather than one global sort) keeps every call's lines between its CALL and its
    RETURN even when clocks tie, which happens often with microsecond-precision sources. The walk
    is a generator over lazily read children, with an explicit stack (traced recursion can nest
    deeper than Python's recursion limit), so memory is one call's events per level and the first
    lines come out before the rest of the trace has been read.
    """

    def __init__(self, tree: SpanTree, start_ns: int, view: View | None = None) -> None:
        self.tree = tree
        self.start = start_ns
        self.view = view or View()
        self.fmt = _Values(self.view.dedupe and not self.view.full)
        self.since = None if self.view.since_ns is None else start_ns + self.view.since_ns
        self.until = None if self.view.until_ns is None else start_ns + self.view.until_ns

    def entry(
        self, span: SpanRecord, time_ns: int, depth: int, kind: str, mechanism: str, text: str, **kw: Any
    ) -> TimelineEntry:
        return TimelineEntry(
            self.tree.trace_id, span.span_id, time_ns, max(0, time_ns - self.start), depth, kind, mechanism,
            function_name(span), text, **kw,
        )  # fmt: skip

    def event_entry(self, span: SpanRecord, event: EventRecord, depth: int) -> TimelineEntry:
        kind, text = _describe_event(event, self.fmt, str(span.attributes.get(semconv.CODE_FILE_PATH) or ""))
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

    def start_entry(self, span: SpanRecord, depth: int, orphan: bool = False) -> TimelineEntry:
        kind, text = _describe_start(span, self.fmt, self.view.full)
        if orphan:
            text += f"  [parent #{span.parent_span_id} not in this trace]"
        return self.entry(
            span, span.start_ns, depth, kind, _mechanism(span.attributes), text, attributes=span.attributes
        )

    def end_entry(self, span: SpanRecord, depth: int) -> TimelineEntry:
        kind, text = _describe_end(span, self.fmt)
        return self.entry(span, span.end_ns, depth, kind, _mechanism(span.attributes), text)

    def _visible(self, start_ns: int, end_ns: int) -> bool:
        return (self.since is None or end_ns >= self.since) and (self.until is None or start_ns <= self.until)

    def _items(
        self, span: SpanRecord, level: int, extra: Iterator[SpanRecord] | None
    ) -> Iterator[tuple[int, int, Any]]:
        """What happens inside ``span``, by time: events first when a child starts at the same instant."""
        consumed = _exception_event(span)
        events = ((e.time_ns, 0, e) for e in span.events if e is not consumed)
        kids: Iterator[SpanRecord | _Fold] = (
            _folded(self.tree.child_heads(span.span_id))
            if self.view.fold
            else self.tree.children(span.span_id)
        )
        children = ((c.first.start_ns if isinstance(c, _Fold) else c.start_ns, 1, c) for c in kids)
        streams: list[Iterator[tuple[int, int, Any]]] = [events, children]
        if extra is not None:
            orphans: Iterator[SpanRecord | _Fold] = (
                _folded(map(SpanHead.of, extra), orphans=True) if self.view.fold else extra
            )
            streams.append(
                (o.first.start_ns, 1, o) if isinstance(o, _Fold) else (o.start_ns, 1, _Orphan(o))
                for o in orphans
            )
        return heapq.merge(*streams, key=lambda item: (item[0], item[1]))

    def walk(
        self,
        root: SpanRecord,
        depth: int = 0,
        orphan: bool = False,
        extra: Iterator[SpanRecord] | None = None,
    ) -> Iterator[TimelineEntry]:
        """``root``'s start line, what happened inside it, and its end line (with ``extra`` spans
        merged in as its children: the orphans of a trace, placed under its root by time)."""
        if not self._visible(root.start_ns, root.end_ns):
            return
        limit = self.view.depth
        yield from self._request(root, depth)
        yield self.start_entry(root, depth, orphan)
        empty: Iterator[tuple[int, int, Any]] = iter(())
        open_ = limit is None or depth < limit
        stack: list[tuple[SpanRecord, int, Iterator[tuple[int, int, Any]]]] = [
            (root, depth, self._items(root, depth, extra) if open_ else empty)
        ]
        while stack:
            span, level, items = stack[-1]
            item = next(items, None)
            if item is None:
                stack.pop()
                yield self.end_entry(span, level)
                continue
            payload = item[2]
            if isinstance(payload, EventRecord):
                if self._visible(payload.time_ns, payload.time_ns):
                    yield self.event_entry(span, payload, level + 1)
                continue
            if isinstance(payload, _Fold):
                if self._visible(payload.first.start_ns, payload.end_ns):
                    yield self.entry(payload.first, payload.first.start_ns, level + 1, "fold",
                                     _mechanism(payload.first.attributes), payload.text())  # fmt: skip
                continue
            orphan_child = isinstance(payload, _Orphan)
            child = payload.span if orphan_child else payload
            if not self._visible(child.start_ns, child.end_ns):
                continue
            yield from self._request(child, level + 1)
            yield self.start_entry(child, level + 1, orphan_child)
            deeper = limit is None or level + 1 < limit
            stack.append((child, level + 1, self._items(child, level + 1, None) if deeper else empty))

    def _request(self, span: SpanRecord, depth: int) -> Iterator[TimelineEntry]:
        # A server trace is a series of requests: each gets its own section heading.
        if span.kind == "SERVER":
            yield self.entry(span, span.start_ns, depth, "request",
                             _mechanism(span.attributes), f"REQUEST {span.name} #{span.span_id}")  # fmt: skip

    def all_entries(self) -> Iterator[TimelineEntry]:
        roots = self.tree.roots()
        first = next(roots, None)
        if first is None:  # every root is in another process: the orphans are the roots
            for orphan in self.tree.orphans():
                yield from self.walk(orphan, 0, orphan=True)
            return
        yield from self.walk(first, 0, extra=self.tree.orphans())
        for root in roots:
            yield from self.walk(root, 0)


@dataclass(frozen=True)
class _Orphan:
    span: SpanRecord


def matches_function(span: SpanRecord, pattern: str) -> bool:
    """Whether ``pattern`` selects this span's function for ``--function``."""
    return function_matcher(pattern)(function_name(span))


def function_matcher(pattern: str) -> Callable[[str], bool]:
    """The ``--function`` test on a function name.

    A target pattern's ``:`` is read as ``.``; with wildcards (``*?[``) the pattern must match the
    whole qualified name or its tail (``check_*`` matches ``shop.inventory.check_stock``),
    otherwise it must occur in the name.
    """
    pat = pattern.strip().replace(":", ".")
    if any(c in pat for c in "*?["):
        return lambda name: fnmatch.fnmatchcase(name, pat) or fnmatch.fnmatchcase(name, "*." + pat)
    return lambda name: pat in name


class _Ancestry:
    """Parents and function names of spans, looked up in the store and remembered (bounded)."""

    def __init__(self, reader: TraceReader, cap: int = 200_000) -> None:
        self.reader, self.cap = reader, cap
        self.known: OrderedDict[str, tuple[str | None, str] | None] = OrderedDict()

    def get(self, span_id: str) -> tuple[str | None, str] | None:
        if span_id in self.known:
            self.known.move_to_end(span_id)
            return self.known[span_id]
        found = self.reader.parent_and_function(span_id)
        self.known[span_id] = found
        if len(self.known) > self.cap:
            self.known.popitem(last=False)
        return found

    def chain(self, span_id: str | None) -> Iterator[tuple[str, str]]:
        """``(span_id, function)`` from ``span_id`` up to the root (stops at a missing parent or a cycle)."""
        seen: set[str] = set()
        while span_id and span_id not in seen:
            seen.add(span_id)
            found = self.get(span_id)
            if found is None:
                return
            yield span_id, found[1]
            span_id = found[0]


@dataclass
class _Open:
    """A matching call still open in ``--function``'s listing, with its events not yet shown; or
    a folded run of them (``fold``), which stays open for matching calls nested in its members."""

    span: SpanRecord
    events: deque[EventRecord]
    fold: bool = False

    def encloses(self, span_id: str, ancestry: _Ancestry) -> bool:
        if not self.fold:
            return self.span.span_id == span_id
        # A member of the run: a sibling of its first call, of the same name.
        found = ancestry.get(span_id)
        return found is not None and found == (self.span.parent_span_id, self.span.name)


def function_entries(reader: TraceReader, pattern: str, view: View | None = None) -> Iterator[TimelineEntry]:
    """``--function``: only the matching calls with their own events, each indented by how many
    matching calls enclose it; runs of sibling calls fold as in the timeline (unless ``--full``),
    decoding only the calls shown. Matching is decided once per distinct span name, and the
    calls are read by name, so a million-span trace is never decoded whole."""
    matcher = function_matcher(pattern)
    walker = _Walker(reader, reader.start_ns(), view)
    ancestry = _Ancestry(reader)
    # The nearest matching ancestor of each parent seen: siblings share it, so it is found once.
    nearest: dict[str | None, str | None] = {}
    stack: list[_Open] = []  # innermost last

    def enclosing(parent: str | None) -> str | None:
        if parent not in nearest:
            if len(nearest) >= _NEAREST_CAP:
                nearest.clear()
            nearest[parent] = next((sid for sid, name in ancestry.chain(parent) if matcher(name)), None)
        return nearest[parent]

    def flush(until_ns: int | None) -> Iterator[TimelineEntry]:
        top = stack[-1]
        while top.events and (until_ns is None or top.events[0].time_ns <= until_ns):
            yield walker.event_entry(top.span, top.events.popleft(), len(stack))

    def close_until(span_id: str | None) -> Iterator[TimelineEntry]:
        while stack and (span_id is None or not stack[-1].encloses(span_id, ancestry)):
            yield from flush(None)
            top = stack.pop()
            if not top.fold:
                yield walker.end_entry(top.span, len(stack))

    calls: Iterator[SpanRecord | _Fold] = (
        _folded(reader.heads(matcher)) if walker.view.fold else reader.spans(matcher)
    )
    for call in calls:
        span = call.first if isinstance(call, _Fold) else call
        yield from close_until(enclosing(span.parent_span_id))
        if stack:
            yield from flush(span.start_ns)
        if isinstance(call, _Fold):
            mechanism = _mechanism(span.attributes)
            yield walker.entry(span, span.start_ns, len(stack), "fold", mechanism, call.text())
            stack.append(_Open(span, deque(), fold=True))
            continue
        yield walker.start_entry(span, len(stack))
        consumed = _exception_event(span)
        stack.append(_Open(span, deque(e for e in span.events if e is not consumed)))
    yield from close_until(None)


_NEAREST_CAP = 100_000


def where_entries(reader: TraceReader, where: Where, view: View | None = None) -> Iterator[TimelineEntry]:
    """``--where``: every call and event whose captured values satisfy ``where``, in start order,
    each with its call path (``outer > inner: ...``). A call (a span otel-scope made, not the
    session) is listed when its own values pass
    (``not x < 0`` lists the calls that captured no ``x``), an event when it captured one of the
    names itself and passes with its call's values. Only the spans that pass the condition's SQL
    prefilter (a superset: they mention its names, with values that can match) are decoded."""
    walker = _Walker(reader, reader.start_ns(), view)
    ancestry = _Ancestry(reader)

    def located(span: SpanRecord, entry: TimelineEntry) -> TimelineEntry:
        names = [name for _, name in ancestry.chain(span.span_id) if name != semconv.SESSION_SPAN_NAME]
        entry.text = f"{' > '.join(reversed(names))}: {entry.text}"
        return entry

    for span in reader.matching(where):
        call = captured_values(span.attributes)
        # Calls only: a session or another instrumentation's span captures no values of its own.
        is_call = semconv.MECHANISM in span.attributes and not _is_session(span)
        if is_call and where.matches(call):
            yield located(span, walker.start_entry(span, 0))
        for event in span.events:
            # An event sees its call's arguments too ("item == 'a' and remaining < 0" works), but
            # is listed only when the condition reads something the event itself captured.
            own = captured_values(event.attributes)
            if not where.names.isdisjoint(own) and where.matches({**call, **own}):
                yield located(span, walker.event_entry(span, event, 0))


def build_timeline(trace: TraceData, function: str | None = None) -> list[TimelineEntry]:
    """The timeline entries of ``trace``; with ``function``, only matching calls and their events,
    indented by how many matching calls enclose them."""
    if not function:
        return list(_Walker(MemoryTree(trace), trace.start_ns, View(fold=False)).all_entries())
    with staged(trace) as reader:
        return list(function_entries(reader, function, View(fold=False)))


# -- following messages --------------------------------------------------------------------------
def _json_text(value: str) -> str:
    # How the store spells a string inside its JSON (escapes included), to search for it there.
    return json.dumps(value, ensure_ascii=False)[1:-1]


@dataclass
class _Message:
    """One message's sending and receiving spans."""

    sent: list[tuple[SpanRecord, EventRecord]]
    received: list[tuple[SpanRecord, EventRecord]]
    senders: list[SpanRecord]
    receivers: list[SpanRecord]

    @property
    def found(self) -> bool:
        return bool(self.sent or self.received or self.senders or self.receivers)


def _message_id(attributes: dict[str, Any]) -> str | None:
    mid = attributes.get(semconv.MESSAGE_ID)
    return None if mid is None else str(mid)


class _Messages:
    """Who sent and who received each message, from message events and span links, looked up in
    the store one message at a time: a text search over the spans that have message events or
    links (a partial index), and only those candidates decoded, so following a message in a
    million-span trace never loads the trace."""

    def __init__(self, reader: TraceReader) -> None:
        self.reader = reader
        self._known: dict[str, _Message] = {}

    def lookup(self, mid: str) -> _Message:
        if mid not in self._known:
            self._known[mid] = self._find(mid)
        return self._known[mid]

    def _find(self, mid: str) -> _Message:
        sent: list[tuple[SpanRecord, EventRecord]] = []
        received: list[tuple[SpanRecord, EventRecord]] = []
        senders: dict[str, SpanRecord] = {}
        receivers: dict[str, SpanRecord] = {}
        linked: list[str] = []  # spans that a link with this message ID points at: its senders
        for span in self.reader.with_messages_mentioning(_json_text(mid)):
            for event in span.events:
                if _message_id(event.attributes) != mid:
                    continue
                if event.name == semconv.EVENT_MESSAGE_SENT:
                    sent.append((span, event))
                    senders.setdefault(span.span_id, span)
                elif event.name == semconv.EVENT_MESSAGE_RECEIVED:
                    received.append((span, event))
                    receivers.setdefault(span.span_id, span)
            for link in span.links:
                if _message_id(link.attributes) == mid:
                    linked.append(link.span_id)
                    receivers.setdefault(span.span_id, span)
        for span_id in linked:
            if span_id not in senders and (sender := self.reader.span(span_id)) is not None:
                senders[span_id] = sender
        # A link without a message ID to one of the senders makes its span a receiver too.
        for sender_id in list(senders):
            for span in self.reader.with_messages_mentioning(sender_id):
                if any(x.span_id == sender_id and semconv.MESSAGE_ID not in x.attributes for x in span.links):
                    receivers.setdefault(span.span_id, span)
        ordered = sorted(receivers.values(), key=lambda s: s.start_ns)
        return _Message(sent, received, list(senders.values()), ordered)

    @staticmethod
    def of_span(span: SpanRecord) -> list[str]:
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
    """:func:`follow_entries` over a trace in memory."""
    with staged(trace) as reader:
        return list(follow_entries(reader, ident))


def follow_entries(reader: TraceReader, ident: str) -> Iterator[TimelineEntry]:
    """The chain from a message (or a span that sent or received one): sender span, the message,
    each receiving span with everything that happened in it, and onward through messages the
    receivers sent in turn.

    ``ident`` is an ``otel_scope.message.id`` or a span ID (or unique prefix of one). A span
    linked to another span with no message events is followed along the link. Only the spans of
    the chain and the subtrees of its receivers are read; ``ident`` is resolved before this
    returns, so an unknown one raises :class:`TraceNotFound` at once.
    """
    messages = _Messages(reader)
    # The timeline prints message IDs as #id: accept them as printed.
    key = ident.strip().removeprefix("#")
    if key and messages.lookup(key).found:
        return _chain(reader, messages, [key])
    count, candidates = reader.with_prefix(key.lower(), 1) if key else (0, [])
    if count > 1:
        raise TraceNotFound(f"span ID prefix {ident!r} matches {count} spans; type more digits")
    if not candidates:
        raise TraceNotFound(
            f"no message or span {ident!r} in trace {reader.trace_id}; --follow takes an "
            f"{semconv.MESSAGE_ID} value or a span ID from this trace"
        )
    start_span = candidates[0]
    queue = messages.of_span(start_span)
    if queue:
        return _chain(reader, messages, queue)
    return _linked(reader, start_span)


def _builder(reader: TraceReader) -> _Walker:
    return _Walker(reader, reader.start_ns(), View(fold=False))


def _linked(reader: TraceReader, start_span: SpanRecord) -> Iterator[TimelineEntry]:
    # No message events: follow span links (sender = linked span, receiver = this span).
    builder = _builder(reader)
    for link in start_span.links:
        sender = reader.span(link.span_id) if link.trace_id == reader.trace_id else None
        if sender is not None:
            yield from _boundary(builder, sender)
    yield from builder.walk(start_span, 1)


def _chain(reader: TraceReader, messages: _Messages, first: list[str]) -> Iterator[TimelineEntry]:
    builder = _builder(reader)
    queue: deque[str] = deque(first)
    done: set[str] = set()
    while queue:
        mid = queue.popleft()
        if mid in done:
            continue
        done.add(mid)
        for entry in _message_entries(builder, messages.lookup(mid), reader, mid):
            # Messages the receivers sent in turn continue the chain.
            if entry.kind == "message_sent" and semconv.MESSAGE_ID in entry.attributes:
                queue.append(str(entry.attributes[semconv.MESSAGE_ID]))
            yield entry


def _boundary(builder: _Walker, span: SpanRecord, sent: EventRecord | None = None) -> list[TimelineEntry]:
    # A sender shown by its CALL line, the send itself, and its RETURN line: the rest of the
    # sender's work is not part of the chain (and is not read).
    out = [builder.start_entry(span, 1)]
    if sent is not None:
        out.append(builder.event_entry(span, sent, 2))
    out.append(builder.end_entry(span, 1))
    return out


def _message_entries(
    builder: _Walker, message: _Message, reader: TraceReader, mid: str
) -> Iterator[TimelineEntry]:
    first = message.sent[0] if message.sent else (message.received[0] if message.received else None)
    attrs = dict(first[1].attributes) if first else {semconv.MESSAGE_ID: mid}
    senders, receivers = message.senders, message.receivers
    sender_names = ", ".join(function_name(s) for s in senders) or attrs.get(semconv.MESSAGE_FROM) or "?"
    receiver_names = ", ".join(function_name(s) for s in receivers) or attrs.get(semconv.MESSAGE_TO) or "?"
    channel = f" via {attrs[semconv.MESSAGE_CHANNEL]}" if semconv.MESSAGE_CHANNEL in attrs else ""
    summary = f": {attrs[semconv.MESSAGE_SUMMARY]}" if semconv.MESSAGE_SUMMARY in attrs else ""
    anchor_span = senders[0] if senders else (receivers[0] if receivers else next(reader.roots(), None))
    if anchor_span is None:
        return
    # The heading sits at the start of the chain (the sender's call) so offsets read in order.
    anchor_time = senders[0].start_ns if senders else (first[1].time_ns if first else anchor_span.start_ns)
    yield builder.entry(
        anchor_span, anchor_time, 0, "message", _mechanism(attrs, _mechanism(anchor_span.attributes)),
        f"MESSAGE #{mid}{channel} {sender_names} -> {receiver_names}{summary}", attributes=attrs,
    )  # fmt: skip
    sent_by = {span.span_id: event for span, event in message.sent}
    for sender in senders:
        yield from _boundary(builder, sender, sent_by.get(sender.span_id))
    for receiver in receivers:
        yield from builder.walk(receiver, 1)


# -- drawing -------------------------------------------------------------------------------------
def entries_to_json(entries: Iterable[TimelineEntry]) -> list[dict[str, Any]]:
    """The entries as JSON-ready objects (``otel-scope history --json``)."""
    return [asdict(e) for e in entries]


SUMMARY_MIN_SPANS = 1_000  # traces with more spans than this start with a summary
_SUMMARY_FUNCTIONS = 15
_SUMMARY_SLOWEST = 5
_ANSI = {
    "bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "blue": "34",
    "magenta": "35", "cyan": "36", "bold red": "1;31", "bold yellow": "1;33",
}  # fmt: skip


class Output:
    """Timeline lines to a text stream, coloured only when asked (a terminal, or a pager of one).

    Writing plain strings rather than rich renderables keeps a million-line timeline at the cost
    of the text itself; captured values are written as they are, never read as markup.
    """

    def __init__(self, stream: IO[str], colour: bool) -> None:
        self.stream, self.colour = stream, colour

    @classmethod
    def for_console(cls, console: Console) -> Output:
        return cls(console.file, console.is_terminal and console.color_system is not None)

    def line(self, *parts: tuple[str, str] | str) -> None:
        out = []
        for part in parts:
            text, style = (part, "") if isinstance(part, str) else part
            code = _ANSI.get(style) if self.colour else None
            out.append(f"\x1b[{code}m{text}\x1b[0m" if code and text else text)
        self.stream.write("".join(out) + "\n")


def _header(stats: TraceStats) -> list[tuple[str, str]]:
    first = f"Trace {stats.trace_id}"
    if stats.session_name:
        first += f"  session {stats.session_name}"
    if stats.services:
        first += f"  service {', '.join(stats.services)}"
    by_mechanism = ", ".join(f"{m} {n}" for m, n in stats.by_mechanism.items() if n)
    second = (
        f"started {format_time(stats.start_ns)}  duration {format_duration(stats.duration_ns)}  "
        f"spans {stats.span_count} ({by_mechanism})" + (f"  errors {stats.errors}" if stats.errors else "")
    )
    lines = [(first, "bold"), (second, "dim")]
    if stats.dropped_captures:
        reasons = f" ({', '.join(stats.dropped_reasons)})" if stats.dropped_reasons else ""
        lines.append((f"dropped captures: {stats.dropped_captures}{reasons}", "yellow"))
    if stats.sdk_dropped_events:
        lines.append(
            (
                f"events dropped at the SDK's per-span limit: {stats.sdk_dropped_events} (the oldest ones)",
                "yellow",
            )
        )
    if stats.dropped_spans:
        where = f" ({'; '.join(stats.dropped_span_reasons)})" if stats.dropped_span_reasons else ""
        lines.append((f"dropped {stats.dropped_spans:,} spans{where}", "yellow"))
    if stats.sampled_out:
        functions = len(stats.sampled_out_by_function)
        of = f" of {stats.sampled_calls:,} calls of sampled functions" if stats.sampled_calls else ""
        named = f" ({functions:,} function{'s' if functions != 1 else ''})" if functions else ""
        lines.append((f"call sampling left out {stats.sampled_out:,}{of}{named}", "yellow"))
    lines += [(f"warning: {w}", "yellow") for w in stats.warnings]
    return lines


def trace_stats(reader: TraceReader) -> TraceStats:
    """The reader's stats with the warnings a backend gave about the trace."""
    stats = reader.stats()
    stats.warnings = list(reader.warnings)
    return stats


def write_summary(reader: TraceReader, stats: TraceStats, out: Output) -> None:
    """The summary of a big trace: where the time went, the slowest calls and the exceptions."""
    functions = reader.function_stats()
    out.line((f"Summary: {len(functions):,} functions, {stats.span_count:,} spans", "bold"))
    width = max([len(f.function) for f in functions[:_SUMMARY_FUNCTIONS]] + [8])
    out.line((f"  {'FUNCTION':<{width}}  {'CALLS':>9}  {'TOTAL':>10}  {'SELF':>10}  RAISED", "dim"))
    sampled = stats.sampled_out_by_function
    for f in functions[:_SUMMARY_FUNCTIONS]:
        left_out = sampled.get(f.function, 0)
        out.line(
            f"  {f.function:<{width}}  {f.calls:>9,}  {format_duration(f.total_ns):>10}  "
            f"{format_duration(f.self_ns):>10}  {f.errors or '':>6}"
            + (f"  {left_out:,} calls sampled out" if left_out else "")
        )
    if len(functions) > _SUMMARY_FUNCTIONS:
        out.line((f"  ... {len(functions) - _SUMMARY_FUNCTIONS:,} more functions", "dim"))
    # Call sampling's counts for the functions the table leaves out (CALLS counts recorded calls).
    shown = {f.function for f in functions[:_SUMMARY_FUNCTIONS]}
    for function, left_out in sampled.items():
        if function not in shown and left_out:
            out.line(f"  {function}: {left_out:,} calls sampled out")
    out.line(("  slowest calls:", "bold"))
    for span in reader.slowest(_SUMMARY_SLOWEST):
        out.line(
            f"    {format_duration(span.duration_ns):>10}  {function_name(span)}  #{span.span_id}  "
            f"at {format_offset(span.start_ns - stats.start_ns)}"
        )
    raised, failures = reader.exceptions(_SUMMARY_SLOWEST)
    if raised:
        out.line((f"  exceptions: {raised:,}", "bold red"))
        for span in failures:
            exc = _exception_event(span)
            what = _exception_text(exc.attributes) if exc is not None else span.status_message or "error"
            at = format_offset(span.start_ns - stats.start_ns)
            out.line(f"    {at}  {function_name(span)}  {what}  #{span.span_id}")
    out.line()


_PADDED_TAGS = {mechanism: f"{tag:<9}" for mechanism, tag in _TAGS.items()}


def _draw(entry: TimelineEntry, out: Output) -> None:
    keyword, _, rest = entry.text.partition(" ")
    if entry.kind == "request":
        out.line()
    if not out.colour:  # the common case (piped, redirected): one string, no styling
        tag = _PADDED_TAGS.get(entry.mechanism) or _PADDED_TAGS[MECHANISM_OTEL]
        text = f"{keyword} {rest}" if rest else keyword
        out.stream.write(f"{format_offset(entry.offset_ns):>12} {tag} {'  ' * entry.depth}{text}\n")
        return
    out.line(
        (f"{format_offset(entry.offset_ns):>12}", "dim"),
        " ",
        (f"{_TAGS.get(entry.mechanism, '[OTEL]'):<9}", _TAG_STYLES.get(entry.mechanism, "")),
        " ",
        "  " * entry.depth,
        (keyword, _KIND_STYLES.get(entry.kind, "bold")),
        " " if rest else "",
        rest,
    )


def _write_header(stats: TraceStats, out: Output) -> None:
    for text, style in _header(stats):
        out.line((text, style))
    out.line()


def _write_lines(entries: Iterable[TimelineEntry], out: Output, limit: int | None) -> int:
    """Draw ``entries`` as they come, stopping (and saying so) after ``limit``; returns how many."""
    shown = 0
    for entry in entries:
        if limit is not None and shown >= limit:
            out.line((f"-- stopped after --limit {limit} lines --", "dim"))
            break
        _draw(entry, out)
        shown += 1
    return shown


def write_entries(stats: TraceStats, entries: Iterable[TimelineEntry], out: Output) -> None:
    """Print the header and then ``entries``, one line each, as they come."""
    _write_header(stats, out)
    _write_lines(entries, out, None)


def render_entries(trace: TraceData, entries: Iterable[TimelineEntry], out: Console | Output) -> None:
    """Print the header of ``trace`` and then ``entries``, one line each, never wrapped."""
    with staged(trace) as reader:
        write_entries(
            trace_stats(reader), entries, out if isinstance(out, Output) else Output.for_console(out)
        )


@dataclass(frozen=True)
class Request:
    """What ``history`` was asked to show of one trace."""

    function: str | None = None
    where: Where | None = None
    view: View = field(default_factory=View)
    limit: int | None = None
    summary: bool | None = None  # None: only for traces over SUMMARY_MIN_SPANS


def history_entries(reader: TraceReader, request: Request, start_ns: int) -> Iterator[TimelineEntry]:
    """The timeline entries ``request`` selects, read lazily from ``reader``."""
    if request.where is not None:
        return where_entries(reader, request.where, request.view)
    if request.function:
        return function_entries(reader, request.function, request.view)
    return _Walker(reader, start_ns, request.view).all_entries()


def write_history(reader: TraceReader, request: Request, out: Output) -> None:
    """Print one trace's header, its summary when it is big, and the timeline ``request`` selects."""
    stats = trace_stats(reader)
    _write_header(stats, out)
    # Big traces, and traces call sampling thinned (the summary says what each function lost).
    big = stats.span_count > SUMMARY_MIN_SPANS or stats.sampled_out > 0
    summary = request.summary if request.summary is not None else big
    if summary and request.where is None and not request.function:
        write_summary(reader, stats, out)
    if _write_lines(history_entries(reader, request, stats.start_ns), out, request.limit):
        return
    if request.where is not None:
        out.line(f"no calls or events where {request.where.text!r}")
    elif request.function:
        names = ", ".join(sorted({f.function for f in reader.function_stats()})[:12]) or "none"
        out.line(f"no calls matching {request.function!r}; functions in this trace: {names}")


def render_history(trace: TraceData, console: Console, function: str | None = None) -> None:
    """Print the unified timeline of ``trace``, optionally only the calls matching ``function``."""
    with staged(trace) as reader:
        write_history(reader, Request(function=function, view=View(fold=False)), Output.for_console(console))
