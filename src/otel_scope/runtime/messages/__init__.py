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

**Where the code is.** :mod:`.model` holds tags, summaries and delivery; one module per kind of
channel adapts it: :mod:`.threads` (threads and thread pools, through propagation's hook),
:mod:`.queues` (``queue``/``asyncio`` queues and tasks), :mod:`.processes` (``multiprocessing``
and ``ProcessPoolExecutor``). This module installs and uninstalls them together.
"""

from __future__ import annotations

import asyncio.base_events
import concurrent.futures
import multiprocessing.process
import multiprocessing.queues
import sys
from typing import Any

from otel_scope.capture import Serializer
from otel_scope.runtime import propagation
from otel_scope.runtime.messages import processes, queues
from otel_scope.runtime.messages.model import claim, disarm, install_lock, replace, restore_all, settle, state
from otel_scope.runtime.messages.threads import handoff

__all__ = ["claim", "handoff", "install", "settle", "uninstall"]


def install(serializer: Serializer) -> None:
    """Start recording hand-offs, summarising items with ``serializer`` (idempotent)."""
    with install_lock:
        state.serializer = serializer
        if state.active:
            return
        cls: type[Any]  # the loops below patch unrelated classes
        for cls in queues.QUEUE_CLASSES:
            replace(cls, "_put", queues.patched_put(vars(cls)["_put"]))
        if sys.version_info >= (3, 11):  # create_task(context=...) carries the pending message
            loop_class = asyncio.base_events.BaseEventLoop
            replace(loop_class, "create_task", queues.patched_create_task(vars(loop_class)["create_task"]))
        mpq = multiprocessing.queues
        for cls in (mpq.Queue, mpq.JoinableQueue, mpq.SimpleQueue):
            replace(cls, "put", processes.patched_mp_put(vars(cls)["put"]))
        for cls in (mpq.Queue, mpq.SimpleQueue):
            replace(cls, "get", processes.patched_mp_get(vars(cls)["get"]))
        base = multiprocessing.process.BaseProcess
        replace(base, "start", processes.patched_start(vars(base)["start"]))
        replace(base, "_bootstrap", processes.patched_bootstrap(vars(base)["_bootstrap"]))
        pool = concurrent.futures.ProcessPoolExecutor
        replace(pool, "submit", processes.patched_submit(vars(pool)["submit"]))
        propagation.handoff_hook = handoff
        state.active = True


def uninstall() -> None:
    """Put every patched method back; pending messages are dropped."""
    with install_lock:
        restore_all()
        if propagation.handoff_hook is handoff:
            propagation.handoff_hook = None
        state.active = False  # before the tables are cleared: a put running now stores nothing after
        queues.reset()
        disarm()
