"""The export pipeline otel-scope builds for every trace exporter: bounded, fork-safe, counted.

The SDK's ``BatchSpanProcessor`` is the wrong shape for a tool that promises never to hang a
program or lose data silently:

* its ``force_flush`` ignores its timeout and exports until the queue is empty, so daemon threads
  that keep making traced calls keep an exiting program alive forever;
* when its queue is full it drops spans with a log line and no count that reaches the trace;
* one queue size serves a remote collector and the local SQLite file alike.

:class:`ScopeSpanProcessor` replaces it (the configurator passes it as the SDK's
``export_span_processor``). One worker thread per exporter exports in batches with OTel's
suppress-instrumentation key set, so nothing the exporter or the store runs is ever traced.
A flush puts a marker in the queue and waits, with a deadline, only for what was queued before
it: spans produced while it waits neither extend nor block it. After :func:`shutdown_all` a
processor refuses new spans. Every span that does not reach its exporter is counted with a
reason (:data:`QUEUE_FULL`, :data:`EXPORT_FAILED` or the exporter's own ``failure_reason``
such as the store's size limit, :data:`AFTER_END`, :data:`DEADLINE`) and
:func:`drops` reports them per destination, for the session root span and the line at exit.

A forked child starts with an empty queue (the parent exports its own spans), fresh counts and
no worker until it ends its first span: the parent's worker thread does not exist in the child.
"""

from __future__ import annotations

import _thread
import collections
import contextlib
import os
import queue
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

from opentelemetry.context import attach, detach, set_value
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_scope import _forksafe
from otel_scope._sdk import SUPPRESS_INSTRUMENTATION_KEY, sampled_flag

#: What exit and a signal may spend, in all, on exporting what is left (seconds).
EXIT_BUDGET_S = 2.0

QUEUE_FULL = "export queue full"
EXPORT_FAILED = "export failed"
AFTER_END = "ended after the session"
DEADLINE = "not exported by the exit deadline"

# The local store commits a batch in one transaction: bigger batches and a deeper queue let it
# keep up with a program making traced calls as fast as it can (see benchmarks/bench_store.py).
_STORE_DEFAULTS = (262_144, 4096, 500)  # max queue size, max batch size, delay (ms)
_REMOTE_DEFAULTS = (2048, 512, 5000)  # the SDK's defaults for a collector


@contextlib.contextmanager
def suppressed() -> Iterator[None]:
    """Run otel-scope's own work under OTel's suppress-instrumentation key: never traced."""
    token = attach(set_value(SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        yield
    finally:
        detach(token)


class _Flush:
    """A marker in the queue: set once every span queued before it has been handed to export."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


def _env_int(name: str, default: int) -> int:
    try:
        value = int(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


def destination(exporter: SpanExporter) -> str:
    """Where ``exporter`` sends spans, in words a user recognises (the store path, the endpoint)."""
    path = getattr(exporter, "path", None)
    if isinstance(path, str):
        return f"the local store {path}"
    endpoint = getattr(exporter, "_endpoint", None)
    if isinstance(endpoint, str):
        return f"OTLP {endpoint}"
    return type(exporter).__name__


class ScopeSpanProcessor(SpanProcessor):
    """Batches finished spans to ``exporter`` from one worker thread; see the module docstring.

    Sizes follow ``OTEL_BSP_MAX_QUEUE_SIZE``, ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` and
    ``OTEL_BSP_SCHEDULE_DELAY`` when set; otherwise the SDK's for a collector and larger ones for
    the local store, whose writes are cheap enough to keep up.
    """

    def __init__(self, exporter: SpanExporter) -> None:
        # Duck-typed, not an import: the store sits above the pipeline in the layers.
        self.local = bool(getattr(exporter, "local_store", False))
        size, batch, delay = _STORE_DEFAULTS if self.local else _REMOTE_DEFAULTS
        self.exporter = exporter
        self.destination = destination(exporter)
        self._max_queue = _env_int("OTEL_BSP_MAX_QUEUE_SIZE", size)
        self._max_batch = min(_env_int("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", batch), self._max_queue)
        self._delay_s = _env_int("OTEL_BSP_SCHEDULE_DELAY", delay) / 1000
        # Re-entrant: a SIGTERM handler runs on the main thread, maybe inside these very calls.
        self._drop_lock = _forksafe.rlock()
        self._start_lock = _forksafe.rlock()
        self._reset()
        weak = weakref.WeakMethod(self._reset)

        def after_fork_in_child() -> None:
            reset = weak()
            if reset is not None:
                reset()

        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=after_fork_in_child)
        _processors.add(self)

    def _reset(self) -> None:
        """Start empty: at construction, and in a forked child (whose parent exports its own queue)."""
        self._queue: collections.deque[Any] = collections.deque()
        # Not an Event: Event.set() takes a lock, and a signal handler that interrupted a set()
        # on the same thread would wait for it forever. SimpleQueue.put is re-entrant.
        self._wake: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._woken = False
        # The worker's "running" lock: held from its start until it has shut the exporter down.
        self._worker: _thread.LockType | None = None
        self._closed = False
        self._stopping = False
        self._dropped: collections.Counter[str] = collections.Counter()
        self._in_flight = 0  # spans in the export call running now
        self._draining = False  # the worker is taking spans off the queue and exporting them
        self.exported = 0

    # -- the producer side (any thread of the program) ------------------------------------------
    def on_start(self, span: Span, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if not sampled_flag(span.context):
            return
        if self._closed:
            self._drop(AFTER_END, 1)
            return
        pending = self._queue
        if span.parent is None:
            # A root (the session's) is never refused for space and goes first: at exit it must
            # not wait behind a backlog that may not fit in the budget, or every stored span of
            # the trace would be an orphan.
            pending.appendleft(span)
        elif len(pending) >= self._max_queue:
            self._drop(QUEUE_FULL, 1)
            return
        else:
            pending.append(span)
        if self._worker is None:
            self._start_worker()
        if len(pending) >= self._max_batch and not self._woken:
            self._wakeup()

    def _wakeup(self) -> None:
        self._woken = True
        self._wake.put(None)

    def _drop(self, reason: str, count: int) -> None:
        with suppressed(), self._drop_lock:
            self._dropped[reason] += count

    def dropped(self) -> dict[str, int]:
        """Spans this processor did not hand to its exporter (or the exporter refused), by reason."""
        with self._drop_lock:
            return {reason: n for reason, n in self._dropped.items() if n}

    def _start_worker(self) -> None:
        # A bare ``_thread`` thread, not ``threading.Thread``: with ``threading:*`` targeted, the
        # Python code of Thread.start() and of the new thread's bootstrap would be traced, and
        # each span it ends would come back here. A span ending while another thread is starting
        # the worker just waits in the queue (no blocking: that thread may be the new worker).
        if not self._start_lock.acquire(blocking=False):
            return
        try:
            if self._worker is None:
                running = _thread.allocate_lock()
                running.acquire()
                self._worker = running
                try:
                    _thread.start_new_thread(self._run_worker, (running,))
                except RuntimeError:  # interpreter shutting down: nothing can export any more
                    self._worker = None
        finally:
            self._start_lock.release()

    def _run_worker(self, running: _thread.LockType) -> None:
        try:
            self._run()
        except BaseException:  # the worker must end quietly; a lost batch was counted
            pass
        finally:
            running.release()

    def _worker_alive(self) -> bool:
        return self._worker is not None and self._worker.locked()

    # -- the worker -------------------------------------------------------------------------------
    def _run(self) -> None:
        # Nothing the exporter runs (sqlite3, urllib3, grpc, json) may be traced: that would feed
        # its own queue forever.
        with suppressed():
            while not self._stopping:
                with contextlib.suppress(queue.Empty):
                    self._wake.get(timeout=self._delay_s)
                self._woken = False
                self._drain()
            self._drain()  # what close() queued while the last drain ran, and its marker
            self.exporter.shutdown()

    def _drain(self) -> None:
        self._draining = True  # spans taken off the queue are not exported yet: a flush waits
        try:
            self._drain_queue()
        finally:
            self._draining = False

    def _drain_queue(self) -> None:
        pending = self._queue
        batch: list[ReadableSpan] = []
        while pending:
            item = pending.popleft()
            if type(item) is _Flush:
                self._export(batch)
                batch = []
                item.done.set()
                continue
            if self._closed and item.parent is None:
                self._export([item])  # at exit a root is stored first, whatever the backlog
                continue
            batch.append(item)
            if len(batch) >= self._max_batch:
                self._export(batch)
                batch = []
        self._export(batch)

    def _export(self, batch: Sequence[ReadableSpan]) -> None:
        if not batch:
            return
        self._in_flight = len(batch)
        try:
            ok = self.exporter.export(batch) is SpanExportResult.SUCCESS
        except Exception:  # an exporter must not kill the worker; the loss is counted instead
            ok = False
        self._in_flight = 0
        if ok:
            self.exported += len(batch)
        else:
            self._drop(getattr(self.exporter, "failure_reason", None) or EXPORT_FAILED, len(batch))

    # -- flushing and shutting down (bounded) -----------------------------------------------------
    def _mark(self) -> _Flush | None:
        """Queue a flush marker and wake the worker; ``None`` when there is nothing to wait for."""
        if not self._worker_alive() or not (self._queue or self._draining):
            return None
        marker = _Flush()
        self._queue.append(marker)
        self._wakeup()
        return marker

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export what was queued before this call; waits at most ``timeout_millis``."""
        marker = self._mark()
        return marker is None or marker.done.wait(max(0, timeout_millis) / 1000)

    def close(self) -> _Flush | None:
        """Refuse new spans from now on (counted as :data:`AFTER_END`), and start the final drain."""
        self._closed = True
        marker = self._mark()
        self._stopping = True
        self._wakeup()
        return marker

    def finish(self, deadline: float) -> bool:
        """Wait until ``deadline`` (``time.monotonic()``) for the final drain; count what is left."""
        worker = self._worker
        if worker is not None:
            if not worker.acquire(timeout=max(0.0, deadline - time.monotonic())):
                # The batch the exporter is stuck on counts as lost too: it may still land after
                # the line at exit was printed, which then overstates the loss, never hides one.
                left = self._in_flight + sum(1 for item in list(self._queue) if type(item) is not _Flush)
                if left:
                    self._drop(DEADLINE, left)
                return False
            worker.release()
        else:
            # No worker ever ran, or none could start (Python 3.12+ refuses new threads once the
            # interpreter is shutting down, when atexit runs): export what is queued here.
            self._drain()
            self.exporter.shutdown()
        return True

    def shutdown(self, timeout_millis: float = EXIT_BUDGET_S * 1000) -> None:
        if self._closed:
            return
        self.close()
        self.finish(time.monotonic() + timeout_millis / 1000)


_processors: weakref.WeakSet[ScopeSpanProcessor] = weakref.WeakSet()


def processors() -> list[ScopeSpanProcessor]:
    """This process's otel-scope export processors (one per configured exporter)."""
    return list(_processors)


def shutdown_all(budget_s: float = EXIT_BUDGET_S) -> bool:
    """Close every processor at once, then wait for all of them within one shared ``budget_s``.

    Returns whether every queue was exported in time. Safe in a signal handler: it appends to
    deques, puts on a ``SimpleQueue`` (re-entrant), takes only re-entrant locks and waits with a
    timeout; the exporting happens on the workers.
    """
    deadline = time.monotonic() + budget_s
    open_ones = [p for p in processors() if not p._closed]
    for p in open_ones:
        p.close()
    return all([p.finish(deadline) for p in open_ones])


def flush_all(budget_s: float = EXIT_BUDGET_S) -> bool:
    """Export what every processor has queued so far, waiting at most ``budget_s`` in all."""
    deadline = time.monotonic() + budget_s
    markers = [p._mark() for p in processors() if not p._closed]
    return all(m is None or m.done.wait(max(0.0, deadline - time.monotonic())) for m in markers)


def drops() -> dict[str, dict[str, int]]:
    """Spans lost so far in this process, per destination, per reason (empty when none were)."""
    return {p.destination: d for p in processors() if (d := p.dropped())}


def describe_drops(lost: dict[str, dict[str, int]]) -> list[str]:
    """One phrase per destination, e.g. ``the local store /x.sqlite3: 10,919 export queue full``."""
    return [
        f"{where}: " + ", ".join(f"{n:,} {reason}" for reason, n in sorted(reasons.items()))
        for where, reasons in sorted(lost.items())
    ]


def loss_line() -> str | None:
    """The line printed at exit when spans were lost, naming each destination and cause.

    When the local store kept everything, the line says so: the timeline is complete there even
    though a collector missed spans.
    """
    lost = drops()
    if not lost:
        return None
    total = sum(sum(reasons.values()) for reasons in lost.values())
    line = f"{total:,} span(s) not exported ({'; '.join(describe_drops(lost))})"
    kept = [p.destination for p in processors() if p.local and p.exported and p.destination not in lost]
    if kept:
        return line + f"; a complete local copy is in {kept[0]}."
    return line + "; the trace is incomplete."


def call_with_deadline(fn: Any, budget_s: float) -> None:
    """Run ``fn()`` on a helper thread and wait at most ``budget_s`` for it.

    For code whose own timeout is not honoured (the SDK's ``force_flush``): the program's exit
    must not wait for it longer than the budget, whatever it does.
    """
    helper = threading.Thread(target=fn, name="otel-scope flush", daemon=True)
    try:
        helper.start()
    except RuntimeError:  # no new threads at interpreter shutdown (3.12+): run it unbounded here
        fn()
        return
    helper.join(budget_s)
