"""The Execution Cinema: one trace in the browser, from lanes of components down to a value on a line.

``otel-scope view`` serves a trace from :mod:`otel_scope.view.server` (127.0.0.1 only) or writes
it as one self-contained HTML file (:func:`standalone_page`). The data the page shows is built
by :mod:`otel_scope.view.model` from a :class:`~otel_scope.timeline.TraceData`, whatever source
read it; this package depends on ``timeline`` and never on ``cli``.
"""

from __future__ import annotations

from otel_scope.view.model import ViewData
from otel_scope.view.page import standalone_page
from otel_scope.view.search import search
from otel_scope.view.server import ViewServer

__all__ = ["ViewData", "ViewServer", "search", "standalone_page"]
