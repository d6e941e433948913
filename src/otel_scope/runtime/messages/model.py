"""The message model: tags, IDs, summaries, and how a pending arrival reaches a span.

Shared by every channel adapter of this package (threads, queues and tasks, processes): a
sending adapter makes a :class:`Tag` with :func:`new_tag` and records the send on the sender's
span (:func:`record_sent`); a receiving adapter makes the tag pending in the receiving thread or
task (:func:`arrive`, :func:`pending_list`), and the span core's observers :func:`claim` and
:func:`settle` deliver it to the span that receives it.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
import time
import types
from collections.abc import Callable
from typing import Any

from opentelemetry.trace import Span, SpanContext, TraceFlags

from otel_scope import _forksafe, semconv
from otel_scope._sdk import SPAN_KEY
from otel_scope.callables import innermost_function, qualified_name
from otel_scope.capture import Serializer
from otel_scope.runtime import propagation, tracing
from otel_scope.runtime.wrappers import awaited_coroutine


class _State:
    """What install() sets: the serializer for summaries, and whether capture is on."""

    __slots__ = ("active", "serializer")

    def __init__(self) -> None:
        self.serializer = Serializer()
        self.active = False


state = _State()
# Reentrant: wrapt calls a post-import hook (which takes it) at once if the module was imported
# meanwhile, inside install(), which holds it.
install_lock = _forksafe.rlock()
_patches: list[tuple[Any, str, Any, Any]] = []  # (owner, attribute, original, ours)


def replace(owner: Any, name: str, ours: Any) -> None:
    """Set ``owner.name`` to ``ours``, remembering the original for :func:`restore_all`."""
    original = vars(owner)[name]
    setattr(owner, name, ours)
    _patches.append((owner, name, original, ours))


def restore_all() -> None:
    """Put back every original :func:`replace` replaced (unless someone replaced ours since)."""
    while _patches:
        owner, name, original, ours = _patches.pop()
        if vars(owner).get(name) is ours:
            setattr(owner, name, original)


_log = logging.getLogger("otel_scope")

# True once this process has sent or taken a message: from then on every otel-scope span looks
# for pending arrivals when it starts (:func:`claim`) and ends (:func:`settle`), as observers of
# the span core. Before the first message, recorded calls pay nothing for message capture.
_armed = False


def _arm() -> None:
    global _armed
    if not _armed:
        _armed = True
        tracing.observe(on_start=claim, on_end=settle)


def disarm() -> None:
    """Stop observing spans (message capture uninstalled); pending arrivals are forgotten."""
    global _armed
    tracing.unobserve(on_start=claim, on_end=settle)
    _armed = False


#: Arrivals a thread or task has taken but no span has received yet (see the module docstring).
pending: contextvars.ContextVar[list[_Arrival] | None] = contextvars.ContextVar(
    "otel_scope_pending_messages", default=None
)
_MAX_PENDING = 32  # a consumer that never runs traced code keeps at most this many


current = tracing.current_context  # the span core's own cheapest read of the current context


# --- message IDs ------------------------------------------------------------------------------
def _new_process_token() -> str:
    return os.urandom(3).hex()


_token = _new_process_token()
_ids = itertools.count(1)


def _after_fork_in_child() -> None:
    # A forked child must not repeat its parent's IDs (its locks are reset by _forksafe).
    global _token, _ids
    _token, _ids = _new_process_token(), itertools.count(1)


os.register_at_fork(after_in_child=_after_fork_in_child)


#: A :class:`Tag` in the picklable form a child process gets: (trace ID, span ID, trace flags,
#: message ID, channel, sender name, summary). Without a message (:func:`context_carrier`) the
#: last four are None: only the trace context travels.
MessageCarrier = tuple[int, int, int, str, str, str, str]
ContextCarrier = tuple[int, int, int, None, None, None, None]
Carrier = MessageCarrier | ContextCarrier


class Tag:
    """What travels with a message: its ID, channel, summary and the sending span."""

    __slots__ = ("channel", "id", "sender", "sender_name", "summary")

    def __init__(self, mid: str, channel: str, sender: SpanContext, sender_name: str, summary: str) -> None:
        self.id, self.channel, self.sender, self.sender_name, self.summary = (
            mid,
            channel,
            sender,
            sender_name,
            summary,
        )

    def carrier(self) -> MessageCarrier:
        """A picklable form, for child processes."""
        sc = self.sender
        flags = int(sc.trace_flags)
        return (sc.trace_id, sc.span_id, flags, self.id, self.channel, self.sender_name, self.summary)


def context_carrier(sc: SpanContext) -> ContextCarrier:
    """A carrier with a trace context but no message (a child started outside traced code)."""
    return (sc.trace_id, sc.span_id, int(sc.trace_flags), None, None, None, None)


def from_carrier(carrier: tuple[Any, ...]) -> tuple[SpanContext, Tag | None]:
    """The sender's context, and its message if it sent one, from a :data:`Carrier`.

    Typed loosely: the message fields are all set or all None, which unpacking cannot tell mypy.
    """
    trace_id, span_id, flags, mid, channel, sender_name, summary = carrier
    sc = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))
    return sc, (Tag(mid, channel, sc, sender_name, summary) if mid is not None else None)


# --- sending ----------------------------------------------------------------------------------
def scope_span_name(span: Any) -> str | None:
    """``code.function.name`` of ``span`` if it is a recording otel-scope call span, else None."""
    try:
        if span is None or not span.is_recording():
            return None
        attributes = span.attributes
        name = attributes.get(semconv.CODE_FUNCTION_NAME)
        return name if type(name) is str and semconv.MECHANISM in attributes else None
    except Exception:
        return None


def sender_of(ctx: Any) -> tuple[Span, str] | None:
    """The otel-scope call span sending from ``ctx``, unless this hand-off is library plumbing."""
    span = ctx.get(SPAN_KEY)
    name = scope_span_name(span)
    if name is None or propagation.internal.get():
        return None
    return span, name


def new_tag(span: Span, name: str, channel: str, summary: str) -> Tag:
    _arm()
    return Tag(f"{_token}-{next(_ids)}", channel, span.get_span_context(), name, summary)


def record_sent(span: Span, tag: Tag, to: str | None = None) -> None:
    attributes = {
        semconv.MESSAGE_ID: tag.id,
        semconv.MESSAGE_CHANNEL: tag.channel,
        semconv.MESSAGE_SUMMARY: tag.summary,
        semconv.MESSAGE_FROM: tag.sender_name,
        semconv.MECHANISM: semconv.MECHANISM_RUNTIME,
        semconv.SESSION_ID: format(tag.sender.trace_id, "032x"),
    }
    if to is not None:
        attributes[semconv.MESSAGE_TO] = to
    span.add_event(semconv.EVENT_MESSAGE_SENT, attributes)


def callable_name(fn: Any) -> str | None:
    """``module.qualname`` of what a hand-off will run, read without running user code."""
    if type(fn) is types.CoroutineType:
        coro = awaited_coroutine(fn)
        if type(coro) is not types.CoroutineType:
            return None
        module = coro.cr_frame.f_globals.get("__name__") if coro.cr_frame is not None else None
        qualname = coro.__qualname__
        return f"{module}.{qualname}" if type(module) is str else qualname
    function = innermost_function(fn)  # through proxies, bound methods, partials, decorators
    return qualified_name(function) if function is not None else None


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def call_summary(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """``name(arg, key=value)``, each value through the safe serializer and kept short.

    An argument gets a quarter of the value length limit, so one verbose object (a queue, a
    connection) cannot push the others out of the summary.
    """
    s = state.serializer
    each = max(s.max_length // 4, 16)
    parts = [_short(s(a), each) for a in args[: s.max_items]]
    if len(args) > s.max_items:
        parts.append(f"..., +{len(args) - s.max_items} more")
    parts += [
        f"{k}={_short(s.named(k, v), each)}" for k, v in list(kwargs.items())[: s.max_items] if type(k) is str
    ]
    return _short(f"{callable_name(fn) or s(fn)}({', '.join(parts)})", s.max_length)


def coroutine_summary(coro: Any) -> str:
    inner = awaited_coroutine(coro) if type(coro) is types.CoroutineType else coro
    frame = getattr(inner, "cr_frame", None) if type(inner) is types.CoroutineType else None
    if frame is None:
        return state.serializer(coro)
    code = inner.cr_code
    names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    values = frame.f_locals
    args = {n: values[n] for n in names if n in values and n not in ("self", "cls")}
    return call_summary(inner, (), args)


# --- receiving --------------------------------------------------------------------------------
class _Arrival:
    """A message taken by a thread or task, waiting for the span that will receive it."""

    __slots__ = ("owner", "tag", "time_ns")

    def __init__(self, tag: Tag, owner: Span | None) -> None:
        self.tag, self.owner, self.time_ns = tag, owner, time.time_ns()


def pending_list(tag: Tag | None) -> list[_Arrival] | None:
    """A fresh pending list holding ``tag``, for the context a hand-off's receiver runs in."""
    if tag is None:
        return None
    _arm()
    return [_Arrival(tag, None)]


def arrive(tag: Tag, owner: Span | None) -> None:
    """Make ``tag`` pending here; ``owner`` (the span current at the ``get``) is the fallback."""
    _arm()
    if owner is not None and owner.get_span_context().span_id == tag.sender.span_id:
        owner = None  # the sender's own context, carried into the consumer: it cannot receive
    arrivals = pending.get()
    if arrivals is None:
        arrivals = []
        pending.set(arrivals)
    elif len(arrivals) >= _MAX_PENDING:
        del arrivals[0]
    arrivals.append(_Arrival(tag, owner))


def current_scope_span() -> Span | None:
    span: Any = current().get(SPAN_KEY)
    return span if scope_span_name(span) is not None else None


def claim(span: Span, name: str) -> None:
    """A new otel-scope span ``span`` (function ``name``) receives what is pending here.

    A span-start observer (:func:`~otel_scope.runtime.tracing.observe`) from the first message on.
    """
    arrivals = pending.get()
    if not arrivals:
        return
    try:
        taken = [a for a in arrivals if a.owner is None or a.owner.is_recording()]
        arrivals.clear()
    except Exception:  # runs before the user's call: never let it fail
        _log.debug("otel-scope could not take pending messages", exc_info=True)
        return
    for arrival in taken:
        _deliver(span, name, arrival.tag, None)


def settle(span: Span) -> None:
    """``span`` is about to end: it receives what was taken while it was current and not claimed."""
    arrivals = pending.get()
    if not arrivals:
        return
    mine = [a for a in arrivals if a.owner is span]
    if not mine:
        return
    arrivals[:] = [a for a in arrivals if a.owner is not span]
    name = scope_span_name(span) or ""  # never raises
    for arrival in mine:
        _deliver(span, name, arrival.tag, arrival.time_ns)


def _deliver(span: Span, name: str, tag: Tag, time_ns: int | None) -> None:
    """Record the received event on ``span`` and link it to the sender (never raises)."""
    try:
        span.add_event(
            semconv.EVENT_MESSAGE_RECEIVED,
            {
                semconv.MESSAGE_ID: tag.id,
                semconv.MESSAGE_CHANNEL: tag.channel,
                semconv.MESSAGE_SUMMARY: tag.summary,
                semconv.MESSAGE_FROM: tag.sender_name,
                semconv.MESSAGE_TO: name,
                semconv.MECHANISM: semconv.MECHANISM_RUNTIME,
                semconv.SESSION_ID: format(span.get_span_context().trace_id, "032x"),
            },
            timestamp=time_ns,
        )
        parent = getattr(span, "parent", None)
        if parent is None or parent.span_id != tag.sender.span_id:
            span.add_link(tag.sender, {semconv.MESSAGE_ID: tag.id, semconv.MESSAGE_CHANNEL: tag.channel})
    except Exception:
        _log.debug("otel-scope could not record message %s", tag.id, exc_info=True)


def receiving(fn: Callable[..., Any], tag: Tag) -> Callable[..., Any]:
    """``fn`` run with ``tag`` pending, for the first span it starts (threads, executors)."""

    def receive_then_run(*args: Any, **kwargs: Any) -> Any:
        token = pending.set(pending_list(tag))
        try:
            return fn(*args, **kwargs)
        finally:
            pending.reset(token)

    return receive_then_run
