"""Sessions: one trace ID that every otel-scope span and event of the session lands in.

* ``process`` (default under ``opentelemetry-instrument``): a root span covers the whole run and
  is the parent of every span that starts with no current span, in any thread.
* ``request``: no root of ours; request spans from web instrumentations stay trace roots and
  otel-scope's spans join them.
* ``explicit``: only ``with otel_scope.session("name") as s:`` records, and ``s.trace_id`` says
  where it went.

The process session's span ends and is flushed at exit, also after an uncaught exception,
``sys.exit`` or SIGTERM.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from otel_scope import semconv
from otel_scope._version import __version__
from otel_scope.capture import sampling
from otel_scope.sessions import state

_log = logging.getLogger("otel_scope")


class Session:
    """A running session; ``trace_id`` is 32 hex digits (all zeros when nothing records)."""

    def __init__(self, name: str, kind: str, span: Span) -> None:
        self.name = name
        self.kind = kind
        self.span = span
        sc = span.get_span_context()
        self.trace_id = format(sc.trace_id, "032x")
        self.recording = span.is_recording()
        self._ended = False
        self._lock = threading.Lock()

    def end(
        self, how: str = "normal", exc: BaseException | None = None, attributes: dict[str, Any] | None = None
    ) -> bool:
        """End the session's span once (adding ``attributes``); returns False if it had already ended."""
        with self._lock:
            if self._ended:
                return False
            self._ended = True
        try:
            self.span.set_attribute(semconv.SESSION_EXIT, how)
            if attributes:
                self.span.set_attributes(attributes)
            if exc is not None:
                self.span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}"))
            self.span.end()
        except Exception:
            _log.debug("otel-scope could not end session %s", self.trace_id, exc_info=True)
        return True

    def __repr__(self) -> str:
        return f"<otel_scope.Session {self.name!r} trace_id={self.trace_id}>"


def _start_root(name: str, kind: str, extra: dict[str, Any] | None = None) -> Session:
    tracer = trace.get_tracer("otel_scope", __version__)
    attrs: dict[str, Any] = {semconv.SESSION_NAME: name, semconv.SESSION_KIND: kind}
    attrs.update(extra or {})
    span = tracer.start_span(semconv.SESSION_SPAN_NAME, context=otel_context.Context(), attributes=attrs)
    if span.is_recording():
        span.set_attribute(semconv.SESSION_ID, format(span.get_span_context().trace_id, "032x"))
    return Session(name, kind, span)


@contextlib.contextmanager
def session(name: str) -> Iterator[Session]:
    """Everything inside lands in one new trace, whose ID is ``.trace_id`` of the value.

    Works in every session kind; in ``explicit`` mode it is the only place otel-scope records.
    """
    s = _start_root(name, "explicit")
    token = otel_context.attach(trace.set_span_in_context(s.span))
    marker = state.active.set(s)
    try:
        yield s
    except BaseException as exc:
        s.end("exception", exc)
        raise
    finally:
        state.active.reset(marker)
        otel_context.detach(token)
        s.end()


class ProcessSession:
    """The ``process`` session of a run: started once, ended exactly once at exit."""

    def __init__(self, name: str, argv: list[str], on_end: Callable[[Session], None] | None = None) -> None:
        self.session = _start_root(
            name, "process", {semconv.SESSION_COMMAND: " ".join(argv)[:512], "process.pid": os.getpid()}
        )
        self._on_end = on_end
        ctx = trace.set_span_in_context(self.session.span)
        state.fallback_context = ctx
        self._token = otel_context.attach(ctx)
        self._previous_excepthook = sys.excepthook
        sys.excepthook = self._excepthook
        if threading.current_thread() is threading.main_thread():
            with contextlib.suppress(ValueError, OSError):
                if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
                    signal.signal(signal.SIGTERM, self._sigterm)
        atexit.register(self.end)

    def _excepthook(self, exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        if self.session.recording:
            self.session.span.record_exception(exc)
        self.end("exception", exc)
        self._previous_excepthook(exc_type, exc, tb)

    def _sigterm(self, signum: int, frame: Any) -> None:
        self.end("signal SIGTERM")
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    def end(self, how: str = "normal", exc: BaseException | None = None) -> None:
        """End the session span, flush it, and tell the user where to see it (once)."""
        # The run's call-sampling totals: what was left out reaches the user with the session.
        if not self.session.end(how, exc, sampling.summary()):
            return
        state.fallback_context = None
        provider = trace.get_tracer_provider()
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            with contextlib.suppress(Exception):
                flush(3000)
        if self._on_end is not None:
            with contextlib.suppress(Exception):
                self._on_end(self.session)
