"""Locks that a forked child gets back unlocked.

``os.fork()`` copies a lock in whatever state it was at that instant. When another thread of the
parent (an exporter's worker, a daemon thread making traced calls) held one of otel-scope's locks
at the moment of the fork, the child's copy stays locked forever: the child hangs the first time
it exports or ends its session. Every lock otel-scope creates comes from :func:`lock` or
:func:`rlock`, which the child re-initialises right after the fork, the way the standard
library's ``threading`` does for its own locks (``_at_fork_reinit``).

What a lock protected is the owner's business: an owner whose state must also change in a child
(a queue of the parent's spans, a connection) registers its own ``after_in_child`` hook.
"""

from __future__ import annotations

import _thread
import os
import threading
import weakref
from typing import Any

_locks: weakref.WeakSet[Any] = weakref.WeakSet()


# The C types, not threading's factories: with ``threading:*`` targeted, a call to
# ``threading.RLock()`` is traced, and otel-scope's own work must never be.
def lock() -> threading.Lock:
    """A ``threading.Lock`` that is unlocked again in a forked child."""
    new = _thread.allocate_lock()
    _locks.add(new)
    return new


def rlock() -> threading.RLock:
    """A ``threading.RLock`` that is unlocked again (and owned by no thread) in a forked child."""
    new = _thread.RLock()
    _locks.add(new)
    return new


def _reinit_in_child() -> None:
    for held in list(_locks):
        held._at_fork_reinit()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_in_child)
