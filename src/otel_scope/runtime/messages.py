"""Messages between components: work that traced code hands to other code, made visible.

In a Python program the components are objects and their hand-offs are queues, executors,
threads, tasks and child processes. When traced code hands something over, the sending call's
span gets an ``otel_scope.message.sent`` event, and the span that picks it up on the other side
gets ``otel_scope.message.received`` plus a span link to the sender (no link where the receiver
is already the sender's child, as for threads, executors and tasks, whose context is carried).
Both events carry the same ``otel_scope.message.id``, so the timeline can follow one message
from the sending function, across the hand-off, into what the receiving function did with it.

**Who receives.** A consumer usually takes the item first and then calls the code that handles
it (``while (order := inbox.get()) is not None: self.check_stock(order)``), and the ``get`` often
runs outside any traced call, or inside a long-lived loop span. So an arrival is *pending* in the
receiving thread or asyncio task (a context variable) until the next otel-scope span starts
there: that span receives it (:func:`claim`). If none starts before the span that was current at
the ``get`` ends, that span receives it instead, timestamped at the ``get`` (:func:`settle`).

**What travels.** Never a wrapper around the user's item: the consumer gets the identical object
it would have got. For in-process queues the sender's span context and the message ID wait in a
side table keyed by the queue and the item's ``id()`` (holding the item, so the ``id()`` cannot be
reused while the entry exists; the table dies with the queue). For ``multiprocessing`` queues the
item is pickled anyway: it is pickled as a call that returns the item itself and leaves the tag
behind for the receiving ``get``, so an uninstrumented receiver still gets the plain item. A child
process gets the trace context with its ``Process`` object and joins the session's trace (also
without a message, e.g. when started from untraced code), and flushes its spans before it exits
(``multiprocessing`` ends children with ``os._exit``, which skips the SDK's exit hooks).

**What it costs untraced code.** The sending side of every patched hand-off first reads the
current OTel context, a C-level context-variable lookup, and does nothing more unless an
otel-scope call span is current (the session's root span does not count). The receiving side of
``queue``/``asyncio`` queues is patched only once a message has been sent through any of them.
``queue.SimpleQueue`` is a C type whose methods cannot be patched; replacing the class itself
would change the type of every such queue in the program (``ThreadPoolExecutor`` uses it) and
cost each of its hand-offs a Python call, so it is deliberately not covered.
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import concurrent.futures
import contextvars
import functools
import itertools
import logging
import multiprocessing.process
import multiprocessing.queues
import os
import queue
import sys
import threading
import time
import types
import weakref
from collections.abc import Callable
from typing import Any

import wrapt
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, TraceFlags

from otel_scope import _forksafe, semconv
from otel_scope._sdk import SPAN_KEY, context_reader
from otel_scope.capture import Serializer
from otel_scope.runtime import propagation, tracing
from otel_scope.sessions import session as process_session
from otel_scope.sessions import state as session_state

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


#: Arrivals a thread or task has taken but no span has received yet (see the module docstring).
_pending: contextvars.ContextVar[list[_Arrival] | None] = contextvars.ContextVar(
    "otel_scope_pending_messages", default=None
)
_MAX_PENDING = 32  # a consumer that never runs traced code keeps at most this many

_serializer = Serializer()
_active = False
_install_lock = _forksafe.lock()
_patches: list[tuple[Any, str, Any, Any]] = []  # (owner, attribute, original, ours)
_receiving_armed = False

_Proxy = getattr(wrapt, "BaseObjectProxy", wrapt.ObjectProxy)  # wrapt 2 splits the base out
_function_qualname = types.FunctionType.__dict__["__qualname__"].__get__
_function_module = types.FunctionType.__dict__["__module__"].__get__
_method_function = types.MethodType.__dict__["__func__"].__get__


_current = context_reader()


# --- message IDs ------------------------------------------------------------------------------
def _new_process_token() -> str:
    return os.urandom(3).hex()


_token = _new_process_token()
_ids = itertools.count(1)
_table_lock = _forksafe.lock()


def _after_fork_in_child() -> None:
    # A forked child must not repeat its parent's IDs (its locks are reset by _forksafe).
    global _token, _ids
    _token, _ids = _new_process_token(), itertools.count(1)


os.register_at_fork(after_in_child=_after_fork_in_child)


class _Tag:
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

    def carrier(self) -> tuple:
        """A picklable form, for child processes."""
        sc = self.sender
        flags = int(sc.trace_flags)
        return (sc.trace_id, sc.span_id, flags, self.id, self.channel, self.sender_name, self.summary)


def _context_carrier(sc: SpanContext) -> tuple:
    """A carrier with a trace context but no message (a child started outside traced code)."""
    return (sc.trace_id, sc.span_id, int(sc.trace_flags), None, None, None, None)


def _from_carrier(carrier: tuple) -> tuple[SpanContext, _Tag | None]:
    trace_id, span_id, flags, mid, channel, sender_name, summary = carrier
    sc = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))
    return sc, (_Tag(mid, channel, sc, sender_name, summary) if mid is not None else None)


# --- sending ----------------------------------------------------------------------------------
def _scope_span_name(span: Any) -> str | None:
    """``code.function.name`` of ``span`` if it is a recording otel-scope call span, else None."""
    try:
        if span is None or not span.is_recording():
            return None
        attributes = span.attributes
        name = attributes.get(semconv.CODE_FUNCTION_NAME)
        return name if type(name) is str and semconv.MECHANISM in attributes else None
    except Exception:
        return None


def _sender(ctx: Any) -> tuple[Span, str] | None:
    """The otel-scope call span sending from ``ctx``, unless this hand-off is library plumbing."""
    span = ctx.get(SPAN_KEY)
    name = _scope_span_name(span)
    if name is None or propagation.internal.get():
        return None
    return span, name


def _new_tag(span: Span, name: str, channel: str, summary: str) -> _Tag:
    _arm()
    return _Tag(f"{_token}-{next(_ids)}", channel, span.get_span_context(), name, summary)


def _record_sent(span: Span, tag: _Tag, to: str | None = None) -> None:
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


def _callable_name(fn: Any) -> str | None:
    """``module.qualname`` of what a hand-off will run, read without running user code."""
    for _ in range(8):  # unwrap proxies, bound methods and partials
        t = type(fn)
        if issubclass(t, _Proxy):
            fn = fn.__wrapped__
        elif t is types.MethodType:
            fn = _method_function(fn)
        elif t is functools.partial:
            fn = fn.func
        elif t is types.CoroutineType:
            fn = _user_coroutine(fn)
            if type(fn) is not types.CoroutineType:
                return None
            module = fn.cr_frame.f_globals.get("__name__") if fn.cr_frame is not None else None
            qualname = fn.__qualname__
            return f"{module}.{qualname}" if type(module) is str else qualname
        else:
            break
    if type(fn) is types.FunctionType:
        module = _function_module(fn)
        qualname = _function_qualname(fn)
        return f"{module}.{qualname}" if type(module) is str else qualname
    return None


def _user_coroutine(coro: types.CoroutineType) -> Any:
    """The user's coroutine inside the one a traced ``async def`` returns (the span's driver)."""
    from otel_scope.runtime.wrappers import RuntimeProbe  # wrappers imports this module

    if coro.cr_code is RuntimeProbe._coroutine.__code__ and coro.cr_frame is not None:
        return coro.cr_frame.f_locals.get("coro")
    return coro


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _call_summary(fn: Any, args: tuple, kwargs: dict) -> str:
    """``name(arg, key=value)``, each value through the safe serializer and kept short.

    An argument gets a quarter of the value length limit, so one verbose object (a queue, a
    connection) cannot push the others out of the summary.
    """
    s = _serializer
    each = max(s.max_length // 4, 16)
    parts = [_short(s(a), each) for a in args[: s.max_items]]
    if len(args) > s.max_items:
        parts.append(f"..., +{len(args) - s.max_items} more")
    parts += [
        f"{k}={_short(s.named(k, v), each)}" for k, v in list(kwargs.items())[: s.max_items] if type(k) is str
    ]
    return _short(f"{_callable_name(fn) or s(fn)}({', '.join(parts)})", s.max_length)


def _coroutine_summary(coro: Any) -> str:
    inner = _user_coroutine(coro) if type(coro) is types.CoroutineType else coro
    frame = getattr(inner, "cr_frame", None) if type(inner) is types.CoroutineType else None
    if frame is None:
        return _serializer(coro)
    code = inner.cr_code
    names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    values = frame.f_locals
    args = {n: values[n] for n in names if n in values and n not in ("self", "cls")}
    return _call_summary(inner, (), args)


# --- receiving --------------------------------------------------------------------------------
class _Arrival:
    """A message taken by a thread or task, waiting for the span that will receive it."""

    __slots__ = ("owner", "tag", "time_ns")

    def __init__(self, tag: _Tag, owner: Span | None) -> None:
        self.tag, self.owner, self.time_ns = tag, owner, time.time_ns()


def _pending_list(tag: _Tag | None) -> list[_Arrival] | None:
    """A fresh pending list holding ``tag``, for the context a hand-off's receiver runs in."""
    if tag is None:
        return None
    _arm()
    return [_Arrival(tag, None)]


def _arrive(tag: _Tag, owner: Span | None) -> None:
    """Make ``tag`` pending here; ``owner`` (the span current at the ``get``) is the fallback."""
    _arm()
    if owner is not None and owner.get_span_context().span_id == tag.sender.span_id:
        owner = None  # the sender's own context, carried into the consumer: it cannot receive
    arrivals = _pending.get()
    if arrivals is None:
        arrivals = []
        _pending.set(arrivals)
    elif len(arrivals) >= _MAX_PENDING:
        del arrivals[0]
    arrivals.append(_Arrival(tag, owner))


def _current_scope_span() -> Span | None:
    span: Any = _current().get(SPAN_KEY)
    return span if _scope_span_name(span) is not None else None


def claim(span: Span, name: str) -> None:
    """A new otel-scope span ``span`` (function ``name``) receives what is pending here.

    A span-start observer (:func:`~otel_scope.runtime.tracing.observe`) from the first message on.
    """
    arrivals = _pending.get()
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
    arrivals = _pending.get()
    if not arrivals:
        return
    mine = [a for a in arrivals if a.owner is span]
    if not mine:
        return
    arrivals[:] = [a for a in arrivals if a.owner is not span]
    name = _scope_span_name(span) or ""  # never raises
    for arrival in mine:
        _deliver(span, name, arrival.tag, arrival.time_ns)


def _deliver(span: Span, name: str, tag: _Tag, time_ns: int | None) -> None:
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


def _receiving(fn: Callable[..., Any], tag: _Tag) -> Callable[..., Any]:
    """``fn`` run with ``tag`` pending, for the first span it starts (threads, executors)."""

    def receive_then_run(*args: Any, **kwargs: Any) -> Any:
        token = _pending.set(_pending_list(tag))
        try:
            return fn(*args, **kwargs)
        finally:
            _pending.reset(token)

    return receive_then_run


# --- threads and thread pools (through propagation's hook) -----------------------------------
def handoff(channel: str, ctx: Any, fn: Callable[..., Any], payload: tuple) -> Callable[..., Any] | None:
    """``propagation.handoff_hook``: record a thread start or pool submit made by a traced call.

    ``payload`` is ``(target, args, kwargs)``, what the summary shows. Returns ``fn`` wrapped so
    that the worker's first otel-scope span receives the message, or None (nothing to record).
    """
    try:
        sender = _sender(ctx)
        if sender is None:
            return None
        span, name = sender
        target, args, kwargs = payload
        tag = _new_tag(span, name, channel, _call_summary(target, args, kwargs))
        _record_sent(span, tag, _callable_name(target))
        return _receiving(fn, tag)
    except Exception:
        _log.debug("otel-scope could not record a %s hand-off", channel, exc_info=True)
        return None


# --- in-process queues: queue.* and asyncio.* -------------------------------------------------
class _Table:
    """Tags of the items now in one queue, by the item's id()."""

    __slots__ = ("items", "ref")

    def __init__(self, ref: weakref.ref) -> None:
        self.ref = ref  # kept alive so that its callback drops this table when the queue dies
        self.items: dict[int, list[tuple[Any, _Tag]]] = {}


_tables: dict[int, _Table] = {}

# Readable channel names for the standard queues (their classes live in private modules).
_CHANNELS = {
    id(queue.Queue): "queue.Queue",
    id(queue.LifoQueue): "queue.LifoQueue",
    id(queue.PriorityQueue): "queue.PriorityQueue",
    id(asyncio.Queue): "asyncio.Queue",
    id(asyncio.LifoQueue): "asyncio.LifoQueue",
    id(asyncio.PriorityQueue): "asyncio.PriorityQueue",
    id(multiprocessing.queues.Queue): "multiprocessing.Queue",
    id(multiprocessing.queues.JoinableQueue): "multiprocessing.JoinableQueue",
    id(multiprocessing.queues.SimpleQueue): "multiprocessing.SimpleQueue",
}


def _channel(q: Any) -> str:
    return _CHANNELS.get(id(type(q))) or _serializer.type_name(q)


def _queue_sent(q: Any, item: Any, ctx: Any) -> None:
    """A traced call puts ``item`` on in-process queue ``q``: tag it and record the send."""
    try:
        sender = _sender(ctx)
        if sender is None:
            return
        span, name = sender
        tag = _new_tag(span, name, _channel(q), _serializer(item))
        key = id(q)
        with _table_lock:
            table = _tables.get(key)
            if table is None:  # (mypy cannot infer the type of a lambda with a default argument)
                table = _tables[key] = _Table(weakref.ref(q, lambda _ref, key=key: _tables.pop(key, None)))  # type: ignore[misc]
            table.items.setdefault(id(item), []).append((item, tag))
        _arm_receiving()
        _record_sent(span, tag)
    except Exception:  # e.g. a queue subclass without weakref support: no message, same put
        _log.debug("otel-scope could not tag an item of a %s", _serializer.type_name(q), exc_info=True)


def _queue_received(q: Any, item: Any) -> None:
    """``item`` was just taken from ``q``: if it carries a tag, it arrives here (never raises:
    the item is already out of the queue and must reach the caller)."""
    table = _tables.get(id(q))
    if table is None:
        return
    try:
        with _table_lock:
            entries = table.items.get(id(item))
            if not entries:
                return
            for i, (obj, found) in enumerate(entries):
                if obj is item:
                    tag = found
                    del entries[i]
                    break
            else:
                return
            if not entries:
                del table.items[id(item)]
        _arrive(tag, _current_scope_span())
    except Exception:
        _log.debug("otel-scope could not receive an item of a %s", _serializer.type_name(q), exc_info=True)


# The queue's internal _put is replaced (it runs under the queue's lock, once the item is
# accepted), not the public put(): no extra call frame around put(). The FIFO and LIFO queues'
# _put is one line, ``self.queue.append(item)`` (``self._queue`` in asyncio); when the original's
# code is exactly that line, the replacement does the append itself instead of calling it, so an
# untraced put pays the context check and nothing else. Defaults bind globals as fast locals.
# The check is ordered cheapest first: an empty context (no span anywhere: falsy), the session's
# own context (identity), and only then a look for a span in it.


def _reference_put(self: Any, item: Any) -> None:
    self.queue.append(item)


def _reference_async_put(self: Any, item: Any) -> None:
    self._queue.append(item)


def _put_append(
    self: Any, item: Any, _current: Any = _current, _key: Any = SPAN_KEY, _state: Any = session_state
) -> None:
    ctx = _current()
    if ctx and ctx is not _state.fallback_context and _key in ctx:
        _queue_sent(self, item, ctx)
    self.queue.append(item)


def _async_put_append(
    self: Any, item: Any, _current: Any = _current, _key: Any = SPAN_KEY, _state: Any = session_state
) -> None:
    ctx = _current()
    if ctx and ctx is not _state.fallback_context and _key in ctx:
        _queue_sent(self, item, ctx)
    self._queue.append(item)


def _same_code(fn: Any, reference: Callable[..., Any]) -> bool:
    code, ref = getattr(fn, "__code__", None), reference.__code__
    return code is not None and (code.co_code, code.co_names, code.co_consts, code.co_varnames) == (
        ref.co_code,
        ref.co_names,
        ref.co_consts,
        ref.co_varnames,
    )


def _patched_put(original: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    for reference, inlined in ((_reference_put, _put_append), (_reference_async_put, _async_put_append)):
        if _same_code(original, reference):  # a copy per class, carrying the original's names
            own = types.FunctionType(inlined.__code__, inlined.__globals__, None, inlined.__defaults__)
            return functools.update_wrapper(own, original)

    @functools.wraps(original)
    def _put(self: Any, item: Any) -> None:
        ctx = _current()
        if ctx and ctx is not session_state.fallback_context and SPAN_KEY in ctx:
            _queue_sent(self, item, ctx)
        original(self, item)

    return _put


def _patched_get(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @functools.wraps(original)
    def _get(self: Any) -> Any:
        item = original(self)
        if _tables:
            _queue_received(self, item)
        return item

    return _get


_QUEUE_CLASSES = (
    queue.Queue,
    queue.LifoQueue,
    queue.PriorityQueue,
    asyncio.Queue,
    asyncio.LifoQueue,
    asyncio.PriorityQueue,
)


def _arm_receiving() -> None:
    """Patch the queues' ``_get`` the first time a message is sent through one of them."""
    global _receiving_armed
    if _receiving_armed:
        return
    with _install_lock:
        if _receiving_armed or not _active:
            return
        for cls in _QUEUE_CLASSES:
            _replace(cls, "_get", _patched_get(vars(cls)["_get"]))
        _receiving_armed = True


# --- asyncio tasks ----------------------------------------------------------------------------
def _task_created(coro: Any, kwargs: dict, ctx: Any) -> dict:
    """A traced call creates a task: record the send, make it pending in the task's context."""
    try:
        sender = _sender(ctx)
        if sender is None:
            return kwargs
        span, name = sender
        tag = _new_tag(span, name, "asyncio.Task", _coroutine_summary(coro))
        _record_sent(span, tag, _callable_name(coro))
        # The task runs in this context; setting our variable there leaves the caller's alone.
        task_context = kwargs.get("context") or contextvars.copy_context()
        task_context.run(_pending.set, _pending_list(tag))
        return {**kwargs, "context": task_context}
    except Exception:
        _log.debug("otel-scope could not record a task hand-off", exc_info=True)
        return kwargs


def _patched_create_task(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def create_task(self: Any, coro: Any, *args: Any, **kwargs: Any) -> Any:
        ctx = _current()
        if ctx and ctx is not session_state.fallback_context and SPAN_KEY in ctx:
            kwargs = _task_created(coro, kwargs, ctx)
        return original(self, coro, *args, **kwargs)

    return create_task


# --- processes: multiprocessing and ProcessPoolExecutor ---------------------------------------
_CARRIER = "_otel_scope_carrier"  # set on a Process before start(); pickled along for spawn


def _process_starting(process: Any, ctx: Any) -> None:
    """Give ``process`` the trace context to join and, from a traced call, a message."""
    sender = _sender(ctx) if SPAN_KEY in ctx else None
    span: Any  # the sender's, or else the current Span read from a Context (which types it object)
    if sender is not None:
        span, name = sender
        namespace = object.__getattribute__(process, "__dict__")
        target = namespace.get("_target")
        args, kwargs = namespace.get("_args", ()), namespace.get("_kwargs", {})
        summary = _call_summary(target if target is not None else process, args, kwargs)
        tag = _new_tag(span, name, "multiprocessing.Process", summary)
        _record_sent(span, tag, _callable_name(target))
        carrier = tag.carrier()
    else:
        # Untraced code or library plumbing: no message, but the child joins the trace, under
        # the current span, or the session's root for a pool's worker (it outlives the call).
        session = session_state.fallback_context
        for candidate in (session, ctx) if propagation.internal.get() else (ctx, session):
            span = candidate.get(SPAN_KEY) if candidate is not None else None
            if span is not None and span.get_span_context().is_valid:
                carrier = _context_carrier(span.get_span_context())
                break
        else:
            return
    object.__getattribute__(process, "__dict__")[_CARRIER] = carrier


def _patched_start(original: Callable[[Any], None]) -> Callable[[Any], None]:
    @functools.wraps(original)
    def start(self: Any) -> None:
        try:
            _process_starting(self, _current())
        except Exception:
            _log.debug("otel-scope could not give a child process the trace context", exc_info=True)
        original(self)

    return start


def _flush() -> None:
    """Export this process's finished spans now (a child ends with os._exit: no atexit)."""
    try:
        flush = getattr(trace.get_tracer_provider(), "force_flush", None)
        if flush is not None:
            flush(3000)
    except Exception:
        _log.debug("otel-scope could not flush a child process's spans", exc_info=True)


def _patched_bootstrap(original: Callable[..., int]) -> Callable[..., int]:
    # Runs in the child: with fork it was inherited, with spawn otel-scope installed it again.
    @functools.wraps(original)
    def _bootstrap(self: Any, *args: Any, **kwargs: Any) -> int:
        global _child
        _child = True
        process_session.default_sigterm_in_child()
        token = None
        try:
            carrier = object.__getattribute__(self, "__dict__").get(_CARRIER)
            if carrier is not None and _active:
                sc, tag = _from_carrier(carrier)
                ctx = trace.set_span_in_context(NonRecordingSpan(sc), otel_context.Context())
                session_state.fallback_context = ctx  # the child's other threads join too
                token = otel_context.attach(ctx)
                _pending.set(_pending_list(tag))
        except Exception:
            _log.debug("otel-scope could not join the parent's trace", exc_info=True)
        try:
            return original(self, *args, **kwargs)
        finally:
            if token is not None:
                otel_context.detach(token)
            _flush()

    return _bootstrap


def _remote_call(fn: Callable[..., Any], carrier: tuple, args: tuple, kwargs: dict) -> Any:
    if not _active:  # a worker process without otel-scope: just the call
        return fn(*args, **kwargs)
    sc, tag = _from_carrier(carrier)
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(sc)))
    pending = _pending.set(_pending_list(tag))
    try:
        return fn(*args, **kwargs)
    finally:
        _pending.reset(pending)
        otel_context.detach(token)


class _RemoteCall:
    """A callable sent to a process pool worker together with the sender's context and tag."""

    __slots__ = ("carrier", "fn")

    def __init__(self, fn: Callable[..., Any], carrier: tuple) -> None:
        self.fn, self.carrier = fn, carrier

    def __reduce__(self) -> tuple:
        return (_RemoteCall, (self.fn, self.carrier))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _remote_call(self.fn, self.carrier, args, kwargs)


def _patched_submit(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def submit(self: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        ctx = _current()
        traced = ctx and ctx is not session_state.fallback_context and SPAN_KEY in ctx
        sender = _sender(ctx) if traced else None
        if sender is None:
            return original(self, fn, *args, **kwargs)
        span, name = sender
        try:
            summary = _call_summary(fn, args, kwargs)
            tag = _new_tag(span, name, "concurrent.futures.ProcessPoolExecutor", summary)
            _record_sent(span, tag, _callable_name(fn))
            fn = _RemoteCall(fn, tag.carrier())
        except Exception:
            _log.debug("otel-scope could not record a process pool hand-off", exc_info=True)
        token = propagation.internal.set(True)  # the pool's own queues and workers are not messages
        try:
            return original(self, fn, *args, **kwargs)
        finally:
            propagation.internal.reset(token)

    return submit


class _Envelope:
    """An item on its way into a multiprocessing queue's pipe; unpickles as the item itself."""

    __slots__ = ("carrier", "item")

    def __init__(self, item: Any, carrier: tuple) -> None:
        self.item, self.carrier = item, carrier

    def __reduce__(self) -> tuple:
        return (_landed, (self.item, self.carrier))


_landing = threading.local()


def _landed(item: Any, carrier: tuple) -> Any:
    """Unpickling an envelope: leave the tag for the ``get`` running in this thread, return the item."""
    if _active:
        _landing.value = (item, carrier)
    return item


def _patched_mp_put(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def put(self: Any, obj: Any, *args: Any, **kwargs: Any) -> Any:
        if _child:
            # A child exports before it hands anything to its parent: a pool worker's result is
            # the parent's cue to terminate it (Pool.__exit__), with no handler of ours left to
            # export then (see sessions.session.default_sigterm_in_child).
            process_session.export_now()
        ctx = _current()
        if ctx and ctx is not session_state.fallback_context and SPAN_KEY in ctx:
            sender = _sender(ctx)
            if sender is not None:
                try:
                    span, name = sender
                    tag = _new_tag(span, name, _channel(self), _serializer(obj))
                    _record_sent(span, tag)
                    obj = _Envelope(obj, tag.carrier())
                except Exception:
                    _log.debug("otel-scope could not tag a multiprocessing item", exc_info=True)
        return original(self, obj, *args, **kwargs)

    return put


_child = False  # this process is a multiprocessing child (set by its _bootstrap)


def _patched_mp_get(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def get(self: Any, *args: Any, **kwargs: Any) -> Any:
        item = original(self, *args, **kwargs)
        landing = getattr(_landing, "value", None)
        if landing is not None:
            _landing.value = None
            if landing[0] is item:
                try:
                    _sc, tag = _from_carrier(landing[1])
                    if tag is not None:
                        _arrive(tag, _current_scope_span())
                except Exception:
                    _log.debug("otel-scope could not receive a multiprocessing item", exc_info=True)
        return item

    return get


# --- installing -------------------------------------------------------------------------------
def _replace(owner: Any, name: str, ours: Any) -> None:
    original = vars(owner)[name]
    setattr(owner, name, ours)
    _patches.append((owner, name, original, ours))


def install(serializer: Serializer) -> None:
    """Start recording hand-offs, summarising items with ``serializer`` (idempotent)."""
    global _serializer, _active
    with _install_lock:
        _serializer = serializer
        if _active:
            return
        cls: type[Any]  # the loops below patch unrelated classes
        for cls in _QUEUE_CLASSES:
            _replace(cls, "_put", _patched_put(vars(cls)["_put"]))
        if sys.version_info >= (3, 11):  # create_task(context=...) carries the pending message
            loop_class = asyncio.base_events.BaseEventLoop
            _replace(loop_class, "create_task", _patched_create_task(vars(loop_class)["create_task"]))
        mpq = multiprocessing.queues
        for cls in (mpq.Queue, mpq.JoinableQueue, mpq.SimpleQueue):
            _replace(cls, "put", _patched_mp_put(vars(cls)["put"]))
        for cls in (mpq.Queue, mpq.SimpleQueue):
            _replace(cls, "get", _patched_mp_get(vars(cls)["get"]))
        base = multiprocessing.process.BaseProcess
        _replace(base, "start", _patched_start(vars(base)["start"]))
        _replace(base, "_bootstrap", _patched_bootstrap(vars(base)["_bootstrap"]))
        pool = concurrent.futures.ProcessPoolExecutor
        _replace(pool, "submit", _patched_submit(vars(pool)["submit"]))
        propagation.handoff_hook = handoff
        _active = True


def uninstall() -> None:
    """Put every patched method back; pending messages are dropped."""
    global _active, _receiving_armed, _armed
    with _install_lock:
        while _patches:
            owner, name, original, ours = _patches.pop()
            if vars(owner).get(name) is ours:
                setattr(owner, name, original)
        if propagation.handoff_hook is handoff:
            propagation.handoff_hook = None
        _tables.clear()
        tracing.unobserve(on_start=claim, on_end=settle)
        _active = _receiving_armed = _armed = False
