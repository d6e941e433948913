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
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

import wrapt

from otel_scope.capture import Serializer
from otel_scope.runtime import propagation
from otel_scope.runtime.messages import queues
from otel_scope.runtime.messages.model import claim, disarm, install_lock, replace, restore_all, settle, state
from otel_scope.runtime.messages.threads import handoff

__all__ = ["claim", "handoff", "install", "settle", "uninstall"]


def install(serializer: Serializer) -> None:
    """Start recording hand-offs, summarising items with ``serializer`` (idempotent).

    The ``multiprocessing`` and ``ProcessPoolExecutor`` classes are patched when their modules
    are imported, or now if they are already: importing them here would cost every start about
    4 ms (``multiprocessing`` pulls in ``pickle``), in the many programs that never use them.
    """
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
        propagation.handoff_hook = handoff
        state.active = True
        for name in _WHEN_IMPORTED:
            _patch_when_imported(name)


def _patch_mp_queues(mpq: ModuleType) -> None:
    from otel_scope.runtime.messages import processes  # see _WHEN_IMPORTED

    queues.name_channels(mpq)
    for cls in (mpq.Queue, mpq.JoinableQueue, mpq.SimpleQueue):
        replace(cls, "put", processes.patched_mp_put(vars(cls)["put"]))
    for cls in (mpq.Queue, mpq.SimpleQueue):
        replace(cls, "get", processes.patched_mp_get(vars(cls)["get"]))


def _patch_mp_process(module: ModuleType) -> None:
    from otel_scope.runtime.messages import processes  # see _WHEN_IMPORTED

    base = module.BaseProcess
    replace(base, "start", processes.patched_start(vars(base)["start"]))
    replace(base, "_bootstrap", processes.patched_bootstrap(vars(base)["_bootstrap"]))


def _patch_process_pool(module: ModuleType) -> None:
    from otel_scope.runtime.messages import processes  # see _WHEN_IMPORTED

    pool = module.ProcessPoolExecutor
    replace(pool, "submit", processes.patched_submit(vars(pool)["submit"]))


# The process adapter itself is imported by these patches, with the modules they patch: a
# program that never uses multiprocessing does not load it either.
_WHEN_IMPORTED: dict[str, Callable[[ModuleType], None]] = {
    "multiprocessing.queues": _patch_mp_queues,
    "multiprocessing.process": _patch_mp_process,
    "concurrent.futures.process": _patch_process_pool,
}
_registered: set[str] = set()  # modules with a post-import hook in wrapt (never removed)
_patched: set[str] = set()  # modules patched since the last install (restore_all undoes them)


def _patch_when_imported(name: str) -> None:
    """Patch module ``name`` now if it is imported, else once it is (under ``install_lock``)."""
    module = sys.modules.get(name)
    if module is not None:
        if name not in _patched:
            _patched.add(name)
            _WHEN_IMPORTED[name](module)
    elif name not in _registered:
        _registered.add(name)
        wrapt.register_post_import_hook(_imported, name)


def _imported(module: ModuleType) -> None:
    """wrapt's post-import hook: patch the module if message capture is on (it may be off by now:
    wrapt cannot take a hook back, so an uninstall leaves it registered)."""
    with install_lock:
        if state.active:
            _patch_when_imported(module.__name__)


def uninstall() -> None:
    """Put every patched method back; pending messages are dropped."""
    with install_lock:
        restore_all()
        _patched.clear()
        if propagation.handoff_hook is handoff:
            propagation.handoff_hook = None
        state.active = False  # before the tables are cleared: a put running now stores nothing after
        queues.reset()
        disarm()
