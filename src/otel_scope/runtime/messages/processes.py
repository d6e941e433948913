"""Processes (``multiprocessing``, ``ProcessPoolExecutor``): children join the trace; hand-offs
between processes are messages.

A ``Process`` gets the trace context (and, from a traced call, a message) before it starts; in
the child, ``_bootstrap`` joins that trace and exports the child's spans before it ends. Items on
``multiprocessing`` queues travel in an envelope that unpickles as the item itself and leaves the
tag for the receiving ``get``. A ``multiprocessing`` child also keeps SIGTERM's default action and
exports before each ``put`` to its parent (see :mod:`otel_scope.sessions.session`).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan

from otel_scope._sdk import SPAN_KEY
from otel_scope.runtime import propagation
from otel_scope.runtime.messages.model import (
    Carrier,
    arrive,
    call_summary,
    callable_name,
    context_carrier,
    current,
    current_scope_span,
    from_carrier,
    new_tag,
    pending,
    pending_list,
    record_sent,
    sender_of,
    state,
)
from otel_scope.runtime.messages.queues import channel
from otel_scope.sessions import session as process_session
from otel_scope.sessions import state as session_state

_log = logging.getLogger("otel_scope")


_CARRIER = "_otel_scope_carrier"  # set on a Process before start(); pickled along for spawn


def _process_starting(process: Any, ctx: Any) -> None:
    """Give ``process`` the trace context to join and, from a traced call, a message."""
    sender = sender_of(ctx) if SPAN_KEY in ctx else None
    span: Any  # the sender's, or else the current Span read from a Context (which types it object)
    carrier: Carrier
    if sender is not None:
        span, name = sender
        namespace = object.__getattribute__(process, "__dict__")
        target = namespace.get("_target")
        args, kwargs = namespace.get("_args", ()), namespace.get("_kwargs", {})
        summary = call_summary(target if target is not None else process, args, kwargs)
        tag = new_tag(span, name, "multiprocessing.Process", summary)
        record_sent(span, tag, callable_name(target))
        carrier = tag.carrier()
    else:
        # Untraced code or library plumbing: no message, but the child joins the trace, under
        # the current span, or the session's root for a pool's worker (it outlives the call).
        session = session_state.fallback_context
        for candidate in (session, ctx) if propagation.internal.get() else (ctx, session):
            span = candidate.get(SPAN_KEY) if candidate is not None else None
            if span is not None and span.get_span_context().is_valid:
                carrier = context_carrier(span.get_span_context())
                break
        else:
            return
    object.__getattribute__(process, "__dict__")[_CARRIER] = carrier


def patched_start(original: Callable[[Any], None]) -> Callable[[Any], None]:
    @functools.wraps(original)
    def start(self: Any) -> None:
        try:
            _process_starting(self, current())
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


def patched_bootstrap(original: Callable[..., int]) -> Callable[..., int]:
    # Runs in the child: with fork it was inherited, with spawn otel-scope installed it again.
    @functools.wraps(original)
    def _bootstrap(self: Any, *args: Any, **kwargs: Any) -> int:
        global _child
        _child = True
        process_session.default_sigterm_in_child()
        token = None
        try:
            carrier = object.__getattribute__(self, "__dict__").get(_CARRIER)
            if carrier is not None and state.active:
                sc, tag = from_carrier(carrier)
                ctx = trace.set_span_in_context(NonRecordingSpan(sc), otel_context.Context())
                session_state.set_fallback_context(ctx)  # the child's other threads join too
                token = otel_context.attach(ctx)
                pending.set(pending_list(tag))
        except Exception:
            _log.debug("otel-scope could not join the parent's trace", exc_info=True)
        try:
            return original(self, *args, **kwargs)
        finally:
            if token is not None:
                otel_context.detach(token)
            _flush()

    return _bootstrap


def _remote_call(
    fn: Callable[..., Any], carrier: Carrier, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if not state.active:  # a worker process without otel-scope: just the call
        return fn(*args, **kwargs)
    sc, tag = from_carrier(carrier)
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(sc)))
    arrival = pending.set(pending_list(tag))
    try:
        return fn(*args, **kwargs)
    finally:
        pending.reset(arrival)
        otel_context.detach(token)


class _RemoteCall:
    """A callable sent to a process pool worker together with the sender's context and tag."""

    __slots__ = ("carrier", "fn")

    def __init__(self, fn: Callable[..., Any], carrier: Carrier) -> None:
        self.fn, self.carrier = fn, carrier

    def __reduce__(self) -> tuple[type[_RemoteCall], tuple[Callable[..., Any], Carrier]]:
        return (_RemoteCall, (self.fn, self.carrier))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _remote_call(self.fn, self.carrier, args, kwargs)


def patched_submit(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def submit(self: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        ctx = current()
        traced = ctx and ctx is not session_state.fallback_context and SPAN_KEY in ctx
        sender = sender_of(ctx) if traced else None
        if sender is None:
            return original(self, fn, *args, **kwargs)
        span, name = sender
        try:
            summary = call_summary(fn, args, kwargs)
            tag = new_tag(span, name, "concurrent.futures.ProcessPoolExecutor", summary)
            record_sent(span, tag, callable_name(fn))
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

    def __init__(self, item: Any, carrier: Carrier) -> None:
        self.item, self.carrier = item, carrier

    def __reduce__(self) -> tuple[Callable[[Any, Carrier], Any], tuple[Any, Carrier]]:
        return (_landed, (self.item, self.carrier))


_landing = threading.local()


def _landed(item: Any, carrier: Carrier) -> Any:
    """Unpickling an envelope: leave the tag for the ``get`` running in this thread, return the item."""
    if state.active:
        _landing.value = (item, carrier)
    return item


def patched_mp_put(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def put(self: Any, obj: Any, *args: Any, **kwargs: Any) -> Any:
        if _child:
            # A child exports before it hands anything to its parent: a pool worker's result is
            # the parent's cue to terminate it (Pool.__exit__), with no handler of ours left to
            # export then (see sessions.session.default_sigterm_in_child).
            process_session.export_now()
        ctx = current()
        if ctx and ctx is not session_state.fallback_context and SPAN_KEY in ctx:
            sender = sender_of(ctx)
            if sender is not None:
                try:
                    span, name = sender
                    tag = new_tag(span, name, channel(self), state.serializer(obj))
                    record_sent(span, tag)
                    obj = _Envelope(obj, tag.carrier())
                except Exception:
                    _log.debug("otel-scope could not tag a multiprocessing item", exc_info=True)
        return original(self, obj, *args, **kwargs)

    return put


_child = False  # this process is a multiprocessing child (set by its _bootstrap)


def patched_mp_get(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def get(self: Any, *args: Any, **kwargs: Any) -> Any:
        item = original(self, *args, **kwargs)
        landing = getattr(_landing, "value", None)
        if landing is not None:
            _landing.value = None
            if landing[0] is item:
                try:
                    _sc, tag = from_carrier(landing[1])
                    if tag is not None:
                        arrive(tag, current_scope_span())
                except Exception:
                    _log.debug("otel-scope could not receive a multiprocessing item", exc_info=True)
        return item

    return get
