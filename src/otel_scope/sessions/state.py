"""Process-wide session state read on the hot path by the runtime and compile-time mechanisms.

Kept separate from :mod:`otel_scope.sessions` (which starts and ends sessions) so that the
mechanisms depend only on this small, import-cheap module.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from opentelemetry.context import Context

#: ``process``, ``request`` or ``explicit`` (see the README's "Sessions").
kind: str = "process"

#: The context holding the process session's root span. Spans that start with no current span
#: (a new thread, a callback from C code) use it as their parent, so the whole run is one trace.
#: Changed only through :func:`set_fallback_context`.
fallback_context: Context | None = None

#: Called after every change of ``fallback_context``: the span core forgets the refusals it
#: remembered under the old one (see ``otel_scope.runtime.tracing.decide``).
fallback_listeners: list[Callable[[], None]] = []


#: What ends the calls still running when the process ends abruptly (``os._exit``, SIGTERM),
#: each called with how it ends and when this process began (a forked child's calls before the
#: fork are its parent's), returning how many calls it ended: the span core's
#: (``otel_scope.runtime.tracing.end_unfinished``), so the sessions need not know the mechanisms.
unfinished_enders: list[Callable[[str, int], int]] = []


def set_fallback_context(ctx: Context | None) -> None:
    """Make ``ctx`` the fallback context, and tell the listeners."""
    global fallback_context
    fallback_context = ctx
    for listener in fallback_listeners:
        listener()


#: The explicit session active in this context, if any. In ``explicit`` mode nothing is
#: recorded outside one.
active: ContextVar[Any] = ContextVar("otel_scope_session", default=None)
