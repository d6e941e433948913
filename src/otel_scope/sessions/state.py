"""Process-wide session state read on the hot path by the runtime and compile-time mechanisms.

Kept separate from :mod:`otel_scope.sessions` (which starts and ends sessions) so that the
mechanisms depend only on this small, import-cheap module.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from opentelemetry.context import Context

#: ``process``, ``request`` or ``explicit`` (see the README's "Sessions").
kind: str = "process"

#: The context holding the process session's root span. Spans that start with no current span
#: (a new thread, a callback from C code) use it as their parent, so the whole run is one trace.
fallback_context: Context | None = None

#: The explicit session active in this context, if any. In ``explicit`` mode nothing is
#: recorded outside one.
active: ContextVar[Any] = ContextVar("otel_scope_session", default=None)
