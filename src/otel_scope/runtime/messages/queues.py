"""In-process queues (``queue.*``, ``asyncio.*``) and asyncio tasks: their hand-offs as messages.

An item put on a queue by a traced call is tagged in a side table keyed by the queue and the
item's ``id()``; the ``get`` that takes it makes the tag pending in the consumer. A task created
by a traced call runs with the tag pending in its own context.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import queue
import types
import weakref
from collections.abc import Callable
from typing import Any

from otel_scope import _forksafe
from otel_scope._sdk import SPAN_KEY
from otel_scope.runtime.messages.model import (
    Tag,
    arrive,
    callable_name,
    coroutine_summary,
    current,
    current_scope_span,
    install_lock,
    new_tag,
    pending,
    pending_list,
    record_sent,
    replace,
    sender_of,
    state,
)
from otel_scope.sessions import state as session_state

_log = logging.getLogger("otel_scope")


class _Table:
    """Tags of the items now in one queue, by the item's id()."""

    __slots__ = ("items", "ref")

    def __init__(self, ref: weakref.ref[Any]) -> None:
        self.ref = ref  # kept alive so that its callback drops this table when the queue dies
        self.items: dict[int, list[tuple[Any, Tag]]] = {}


_tables: dict[int, _Table] = {}
_table_lock = _forksafe.lock()
_receiving_armed = False

# Readable channel names for the standard queues (their classes live in private modules).
_CHANNELS = {
    id(queue.Queue): "queue.Queue",
    id(queue.LifoQueue): "queue.LifoQueue",
    id(queue.PriorityQueue): "queue.PriorityQueue",
    id(asyncio.Queue): "asyncio.Queue",
    id(asyncio.LifoQueue): "asyncio.LifoQueue",
    id(asyncio.PriorityQueue): "asyncio.PriorityQueue",
}


def name_channels(mpq: types.ModuleType) -> None:
    """Add the ``multiprocessing`` queues (module ``mpq``, patched once it is imported)."""
    for cls in (mpq.Queue, mpq.JoinableQueue, mpq.SimpleQueue):
        _CHANNELS[id(cls)] = f"multiprocessing.{cls.__name__}"


def channel(q: Any) -> str:
    """The channel name a message through ``q`` carries."""
    return _CHANNELS.get(id(type(q))) or state.serializer.type_name(q)


def _queue_sent(q: Any, item: Any, ctx: Any) -> None:
    """A traced call puts ``item`` on in-process queue ``q``: tag it and record the send."""
    try:
        sender = sender_of(ctx) if state.active else None  # a patched _put kept past uninstall
        if sender is None:
            return
        span, name = sender
        tag = new_tag(span, name, channel(q), state.serializer(item))
        key = id(q)
        with _table_lock:
            # Checked again under the lock that reset() clears under: an entry stored after
            # uninstall would hold the item as long as the queue lives (no _get takes it).
            if not state.active:
                return
            table = _tables.get(key)
            if table is None:  # (mypy cannot infer the type of a lambda with a default argument)
                table = _tables[key] = _Table(weakref.ref(q, lambda _ref, key=key: _tables.pop(key, None)))  # type: ignore[misc]
            table.items.setdefault(id(item), []).append((item, tag))
        _arm_receiving()
        record_sent(span, tag)
    except Exception:  # e.g. a queue subclass without weakref support: no message, same put
        _log.debug("otel-scope could not tag an item of a %s", state.serializer.type_name(q), exc_info=True)


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
        arrive(tag, current_scope_span())
    except Exception:
        _log.debug(
            "otel-scope could not receive an item of a %s", state.serializer.type_name(q), exc_info=True
        )


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
    self: Any, item: Any, current: Any = current, _key: Any = SPAN_KEY, _state: Any = session_state
) -> None:
    ctx = current()
    if ctx and ctx is not _state.fallback_context and _key in ctx:
        _queue_sent(self, item, ctx)
    self.queue.append(item)


def _async_put_append(
    self: Any, item: Any, current: Any = current, _key: Any = SPAN_KEY, _state: Any = session_state
) -> None:
    ctx = current()
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


def patched_put(original: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    for reference, inlined in ((_reference_put, _put_append), (_reference_async_put, _async_put_append)):
        if _same_code(original, reference):  # a copy per class, carrying the original's names
            own = types.FunctionType(inlined.__code__, inlined.__globals__, None, inlined.__defaults__)
            return functools.update_wrapper(own, original)

    @functools.wraps(original)
    def _put(self: Any, item: Any) -> None:
        ctx = current()
        if ctx and ctx is not session_state.fallback_context and SPAN_KEY in ctx:
            _queue_sent(self, item, ctx)
        original(self, item)

    return _put


def patched_get(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @functools.wraps(original)
    def _get(self: Any) -> Any:
        item = original(self)
        if _tables:
            _queue_received(self, item)
        return item

    return _get


QUEUE_CLASSES = (
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
    with install_lock:
        if _receiving_armed or not state.active:
            return
        for cls in QUEUE_CLASSES:
            replace(cls, "_get", patched_get(vars(cls)["_get"]))
        _receiving_armed = True


# --- asyncio tasks ----------------------------------------------------------------------------
def _task_created(coro: Any, kwargs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """A traced call creates a task: record the send, make it pending in the task's context."""
    try:
        sender = sender_of(ctx)
        if sender is None:
            return kwargs
        span, name = sender
        tag = new_tag(span, name, "asyncio.Task", coroutine_summary(coro))
        record_sent(span, tag, callable_name(coro))
        # The task runs in this context; setting our variable there leaves the caller's alone.
        task_context = kwargs.get("context") or contextvars.copy_context()
        task_context.run(pending.set, pending_list(tag))
        return {**kwargs, "context": task_context}
    except Exception:
        _log.debug("otel-scope could not record a task hand-off", exc_info=True)
        return kwargs


def patched_create_task(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def create_task(self: Any, coro: Any, *args: Any, **kwargs: Any) -> Any:
        ctx = current()
        if ctx and ctx is not session_state.fallback_context and SPAN_KEY in ctx:
            kwargs = _task_created(coro, kwargs, ctx)
        return original(self, coro, *args, **kwargs)

    return create_task


def reset() -> None:
    """Forget every tag (message capture uninstalled); the ``_get`` patch is undone with the rest."""
    global _receiving_armed
    with _table_lock:
        _tables.clear()
    _receiving_armed = False
