"""otel-scope: one trace, two depths (runtime spans and compile-time locals) on OpenTelemetry.

Public API::

    handle = otel_scope.trace("pkg.mod:Class.method", capture_locals=["x"], lines=[15])
    handle.remove()
    with otel_scope.session("checkout-bug") as s:
        ...
    s.trace_id
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from otel_scope import _lazy
from otel_scope._version import __version__

if TYPE_CHECKING:
    from otel_scope.api import session, shutdown, trace
    from otel_scope.engine import Handle
    from otel_scope.sessions.session import Session

__all__ = ["Handle", "Session", "__version__", "session", "shutdown", "trace"]

# Where each public name lives. They are imported on first use, so that ``otel-scope history``
# and the other commands, which import ``otel_scope.cli``, do not load the instrumentation.
_PUBLIC = {
    "trace": "otel_scope.api",
    "session": "otel_scope.api",
    "shutdown": "otel_scope.api",
    "Handle": "otel_scope.engine",
    "Session": "otel_scope.sessions.session",
}


def __getattr__(name: str) -> Any:
    return _lazy.attribute(__name__, _PUBLIC, name, globals())
