"""otel-scope: one trace, two depths (runtime spans and compile-time locals) on OpenTelemetry.

Public API::

    handle = otel_scope.trace("pkg.mod:Class.method", capture_locals=["x"], lines=[15])
    handle.remove()
    with otel_scope.session("checkout-bug") as s:
        ...
    s.trace_id
"""

from otel_scope._version import __version__
from otel_scope.api import session, shutdown, trace
from otel_scope.engine import Handle
from otel_scope.sessions.session import Session

__all__ = ["Handle", "Session", "__version__", "session", "shutdown", "trace"]
