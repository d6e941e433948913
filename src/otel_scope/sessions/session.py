"""Sessions: one trace ID that every otel-scope span and event of the session lands in.

* ``process`` (default under ``opentelemetry-instrument``): a root span covers the whole run and
  is the parent of every span that starts with no current span, in any thread.
* ``request``: no root of ours; request spans from web instrumentations stay trace roots and
  otel-scope's spans join them.
* ``explicit``: only ``with otel_scope.session("name") as s:`` records, and ``s.trace_id`` says
  where it went.

The process session's span ends and is exported at exit, also after an uncaught exception,
``sys.exit`` or SIGTERM, within :data:`otel_scope.pipeline.EXIT_BUDGET_S`; what the export
pipeline lost is counted on the root span.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from otel_scope import _forksafe, pipeline, semconv
from otel_scope._version import __version__
from otel_scope.capture import Serializer, sampling
from otel_scope.capture.exceptions import record_exception
from otel_scope.sessions import state

_log = logging.getLogger("otel_scope")
_REAL_OS_EXIT = os._exit


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
        self._lock = _forksafe.rlock()  # a SIGTERM handler may end the session inside end()

    def end(
        self, how: str = "normal", exc: BaseException | None = None, attributes: dict[str, Any] | None = None
    ) -> bool:
        """End the session's span once, adding ``attributes``; returns False if it had already ended."""
        with self._lock:
            if self._ended:
                return False
            self._ended = True
        try:
            self.span.set_attributes(attributes or {})
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


def _drop_attributes() -> dict[str, Any]:
    """What the export pipeline lost so far, as attributes of the session root (none if nothing)."""
    lost = pipeline.drops()
    if not lost:
        return {}
    return {
        semconv.SESSION_DROPPED_SPANS: sum(sum(reasons.values()) for reasons in lost.values()),
        semconv.SESSION_DROPPED_REASONS: pipeline.describe_drops(lost),
    }


_exported_pid = 0  # the process whose final export already ran (a forked child has another)


def _finish_export(
    report: Callable[[str], None] | None, who: str = "", first: Callable[[], None] | None = None
) -> None:
    """Export what is left within the exit budget, then say what was lost (one line, if any).

    Once per process, whichever exit path comes first (atexit, SIGTERM, ``os._exit``); ``first``
    runs before, in that once only.
    """
    global _exported_pid
    if _exported_pid == os.getpid():
        return
    _exported_pid = os.getpid()
    if first is not None:
        with contextlib.suppress(Exception):
            first()
    with pipeline.suppressed():
        _export_and_report(report, who)


def _export_and_report(report: Callable[[str], None] | None, who: str) -> None:
    if pipeline.processors():
        pipeline.shutdown_all(pipeline.EXIT_BUDGET_S)
    else:  # another configurator's processors: their flush may ignore its timeout, so bound it
        flush = getattr(trace.get_tracer_provider(), "force_flush", None)
        if flush is not None:
            pipeline.call_with_deadline(flush, pipeline.EXIT_BUDGET_S)
    line = pipeline.loss_line()
    if line and report is not None:
        report(who + line)


def _pid() -> str:
    """How a forked child's lines name it."""
    return f"(pid {os.getpid()}) "


def _in_child(report: Callable[[str], None] | None) -> None:
    _finish_export(report, _pid(), _end_process_span)


_began_ns = 0  # when this process began to count for itself: its fork, or export_at_exit()


def _note_fork() -> None:
    global _began_ns
    _began_ns = time.time_ns()


def _end_process_span() -> None:
    """This process's own counts, on an ``otel_scope.process`` span, in a process whose counts
    no session span of its own carries: a forked child (the session span is its parent's, and
    ends with the parent's counts only), a ``multiprocessing`` helper, a process under
    ``request`` or ``explicit`` sessions (then the span is a trace of its own).

    Without it the calls call sampling left out in a pre-fork server's workers, where nearly all
    the calls are, and what a worker's pipeline lost before its exit would reach no one. The span
    runs from the fork (or start) to now, under the parent's session root when there is one, and
    is made only when there is something to count.
    """
    counts = {**_drop_attributes(), **sampling.summary()}
    if not counts:
        return
    tracer = trace.get_tracer("otel_scope", __version__)
    span = tracer.start_span(
        semconv.PROCESS_SPAN_NAME,
        context=state.fallback_context,
        start_time=_began_ns or None,
        attributes={"process.pid": os.getpid(), "process.parent_pid": os.getppid(), **counts},
    )
    span.end()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_note_fork)


def _export_at_os_exit(
    before_exit: Callable[[], None], report: Callable[[str], None] | None, who: str = ""
) -> None:
    """Make ``os._exit`` end the calls still running, then run ``before_exit``, then exit.

    A process that leaves with ``os._exit`` (a forked child: pre-forking servers, multiprocessing's
    fork workers; or the program itself) runs no atexit handler, so its spans would die in the
    queue, and those of the calls it leaves inside would never end. ``from os import _exit``
    taken before is not covered (a process that execs is: :func:`_export_before_exec`).
    """
    real_exit = _REAL_OS_EXIT

    def exit_after_export(status: int) -> NoReturn:
        with contextlib.suppress(Exception):
            _end_unfinished(f"os._exit({status})", report, who)
        with contextlib.suppress(Exception):
            before_exit()
        real_exit(status)

    os._exit = exit_after_export


def _end_unfinished(how: str, report: Callable[[str], None] | None, who: str) -> None:
    """End the calls still running as the process ends abruptly (``how``), and say how many
    (``who``: the pid of a forked child, as its other exit lines)."""
    ended = sum(end(how, _began_ns) for end in state.unfinished_enders)
    if ended and report is not None:
        calls, spans = ("call", "its span ends") if ended == 1 else ("calls", "their spans end")
        report(f"{who}{ended:,} traced {calls} still running at {how}: {spans} there ({semconv.UNFINISHED})")


# Every os.exec* function goes through one of these two (os.py's execl, execlp, execvp, ...).
_REAL_EXECS = {name: getattr(os, name) for name in ("execv", "execve") if hasattr(os, name)}


def _export_before_exec(before_exec: Callable[[], None]) -> None:
    """Make ``os.exec*`` run ``before_exec`` first: the new program replaces this process with
    no atexit handler run, so its spans (and a session's root) would die in the queue.

    A reloader that re-executes itself, a wrapper script handing over to the real program, a
    forked child that execs. If the exec then fails, the program goes on with tracing ended:
    its later spans are counted as lost, never silently dropped.
    """
    for name, real in _REAL_EXECS.items():

        def exec_after_export(*args: Any, _real: Callable[..., NoReturn] = real, **kwargs: Any) -> NoReturn:
            with contextlib.suppress(Exception):
                before_exec()
            _real(*args, **kwargs)

        functools.update_wrapper(exec_after_export, real)
        setattr(os, name, exec_after_export)


def _on_sigterm(before_exit: Callable[[], None], report: Callable[[str], None] | None) -> None:
    """On SIGTERM end the calls still running, run ``before_exit``, then die of SIGTERM as the
    program would have.

    Only when the program has no SIGTERM handler of its own, and only from the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    pid = os.getpid()

    def on_sigterm(signum: int, frame: Any) -> None:
        with contextlib.suppress(Exception):
            _end_unfinished("signal SIGTERM", report, "" if os.getpid() == pid else _pid())
        before_exit()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    with contextlib.suppress(ValueError, OSError):
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, on_sigterm)
            _sigterm_handlers.append(on_sigterm)


_sigterm_handlers: list[Callable[[int, Any], None]] = []  # ours, as installed by _on_sigterm


def default_sigterm_in_child() -> None:
    """In a ``multiprocessing`` child: let SIGTERM kill at once, as it does without otel-scope.

    Python runs a signal handler only when the main thread is back in the interpreter. A child
    that gets SIGTERM just before it blocks on a semaphore (a pool worker waiting for its next
    task, at the very moment ``Pool.terminate()`` signals it) never runs the handler and never
    dies, and the parent's ``join()`` waits for it forever (seen in CI: about one run in ten on a
    loaded machine). Such children export before each item they hand to their parent instead
    (:func:`export_now`), and at their normal end.
    """
    with contextlib.suppress(ValueError, OSError):
        if signal.getsignal(signal.SIGTERM) in _sigterm_handlers:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


_CHILD_FLUSH_S = 1.0
_child_flush = True  # until a flush runs out of time in this process


def export_now() -> None:
    """Export what this process has queued so far (a child about to hand over a result or a
    message), waiting at most 1 s; at once when nothing is queued.

    A destination that does not keep up (a collector that is down) would make every hand-over
    that slow: after the first flush that runs out of time, this process stops trying and its
    spans go out as the pipeline manages (and are counted if lost).
    """
    global _child_flush
    if _child_flush:
        with pipeline.suppressed():
            _child_flush = pipeline.flush_all(_CHILD_FLUSH_S)


def export_at_exit(report: Callable[[str], None] | None = None) -> None:
    """Export this process's spans on every way out, in a process with no ``process`` session:
    ``request`` and ``explicit`` sessions, and ``multiprocessing`` helpers (spawn/forkserver pool
    workers, whom ``Pool.terminate()`` stops with SIGTERM, where no atexit handler runs).
    Forked children of such a process export theirs at exit, SIGTERM and ``os._exit`` too.
    """
    global _began_ns
    _began_ns = _began_ns or time.time_ns()
    _on_sigterm(lambda: _finish_export(report, "", _end_process_span), report)
    atexit.register(_finish_export, report, "", _end_process_span)
    _export_before_exec(lambda: _finish_export(report, "", _end_process_span))
    _export_at_os_exit(lambda: _finish_export(report, "", _end_process_span), report)
    if hasattr(os, "register_at_fork"):
        in_child = functools.partial(_in_child, report)
        os.register_at_fork(after_in_child=lambda: _export_at_os_exit(in_child, report, _pid()))


class ProcessSession:
    """The ``process`` session of a run: started once, ended exactly once at exit, by its process.

    A child made by ``os.fork()`` inherits this object, its ``atexit`` entry and its SIGTERM
    handler. Its spans stay in the parent's trace (the fallback context is the parent's root),
    but the session is the parent's: the child only exports its own spans, within the exit
    budget, and never ends the root or prints the closing line.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        on_end: Callable[[Session], None] | None = None,
        report: Callable[[str], None] | None = None,
        serializer: Serializer | None = None,
    ) -> None:
        # The command line is recorded with secrets hidden (``--password=X``, ``--token X``, URLs
        # with a password), by the user's redaction names when the engine's serializer is given.
        self._serializer = serializer if serializer is not None else Serializer()
        command = " ".join(self._serializer.scrubber.argv(argv))[:512]
        self.session = _start_root(
            name, "process", {semconv.SESSION_COMMAND: command, "process.pid": os.getpid()}
        )
        self._pid = os.getpid()
        self._on_end = on_end
        self._report = report
        ctx = trace.set_span_in_context(self.session.span)
        state.set_fallback_context(ctx)
        self._token = otel_context.attach(ctx)
        # No sys.excepthook of ours: programs call the hook themselves (and compare its output
        # with the built-in one's); the exception that ends the run is read at exit instead.
        _on_sigterm(lambda: self.end("signal SIGTERM"), report)
        atexit.register(self._at_exit)
        _export_before_exec(lambda: self.end("exec"))
        _export_at_os_exit(lambda: self.end("os._exit"), report)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=lambda: _export_at_os_exit(self.end, report, _pid()))

    def _at_exit(self) -> None:
        """End the session at interpreter exit, as ended by the uncaught exception if one was.

        Python stores the exception that reached the top level in ``sys.last_value`` before it
        prints it (a call of ``sys.excepthook`` by the program does not), so this tells a run that
        died of an exception from one that printed one. It is recorded through the safe path: a
        user exception's ``__str__``/``__repr__`` is never called. A forked child only exports.
        """
        exc = getattr(sys, "last_value", None)
        if not isinstance(exc, BaseException) or os.getpid() != self._pid:
            self.end()
            return
        if self.session.recording:
            record_exception(self.session.span, exc, self._serializer)
        self.end("exception", exc)

    def end(self, how: str = "normal", exc: BaseException | None = None) -> None:
        """End the session span, export within the exit budget, and say where to see it (once)."""
        pid = os.getpid()
        if pid != self._pid:  # a forked child: export its own spans, leave the session alone
            _in_child(self._report)
            return
        if not self.session.end(how, exc, {**_drop_attributes(), **sampling.summary()}):
            return
        state.set_fallback_context(None)
        _finish_export(self._report)
        if self._on_end is not None:
            with contextlib.suppress(Exception):
                self._on_end(self.session)
