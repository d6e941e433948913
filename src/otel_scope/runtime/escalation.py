"""Escalation: a runtime-traced function that misbehaves gets compile-time locals on its next calls.

A runtime span says *that* a call failed or was slow; the locals say *why*. Rather than capture
locals on every call (costly, and noisy), the rules here watch the runtime data the wrappers
already have and deepen capture only where something happened:

* **exception**: a call raised an ``Exception`` (not ``StopIteration``, nor ``KeyboardInterrupt``,
  ``SystemExit``, ``GeneratorExit`` or a cancellation: those are control flow, not faults);
* **slow**: a call took at least :data:`SLOW_FACTOR` times the 90th percentile of the function's
  own recent calls (and :data:`SLOW_MIN_EXCESS_NS` more), once :data:`SLOW_MIN_SAMPLES` calls
  have been seen; comparing a function with its own history needs no threshold from the user.

Escalating adds a request for the function (all locals, compile-time; source ``escalation``) to
the engine, which recompiles it on demand (``__code__`` swap: a call in flight finishes under the
code it started with). Recompiling parses the function's module, which takes from milliseconds to
a second: it never happens on the thread whose call triggered it. That call only queues the
escalation (at most :data:`QUEUE_LIMIT` wait); one daemon thread, started on the first escalation,
recompiles, and the function's calls get locals from the moment the new code is in place. The
worker runs with OTel's suppress-instrumentation key set (nothing it runs is traced), is replaced
by none in a forked child (whose escalations are forgotten), and delays exit by at most the
recompile in flight (:data:`EXIT_WAIT_S`): what is still queued then is dropped, not started.
Escalations refused by a budget or a full queue, or dropped
at exit, and those whose recompile failed are counted (:meth:`Escalator.losses`, shown by
``otel-scope targets list``). After :data:`ESCALATION_CALLS` recorded calls, or :data:`MAX_DURATION_S`
seconds, the request is removed and the original code object is back. Every escalation puts an
``otel_scope.escalation`` event on the span that triggered it, and ``otel-scope targets list``
shows the active and recent ones.

Budgets, so that a function failing in a tight loop cannot turn capture on and off continuously:
one escalation per function per :data:`FUNCTION_COOLDOWN_S`, at most :data:`PROCESS_PER_MINUTE`
per process per minute, and :data:`MAX_ACTIVE` at once.

Whether it runs at all is decided by :func:`otel_scope.bootstrap.escalation_enabled`, before this
module is imported (a process without escalation never loads it): ``escalation=off`` never;
``on`` always; ``auto`` (the default) in ``development`` unless the mode is ``runtime`` (the user
asked for runtime only), and never in ``production``, where deeper capture must be asked for
explicitly.
"""

from __future__ import annotations

import _thread
import atexit
import logging
import os
import queue
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry.context import attach, detach, set_value

from otel_scope import _forksafe, semconv
from otel_scope._sdk import SUPPRESS_INSTRUMENTATION_KEY
from otel_scope.capture import RateLimiter
from otel_scope.config import Settings
from otel_scope.config.patterns import parse_pattern
from otel_scope.targets.planner import ESCALATION, Request
from otel_scope.vocabulary import LEVEL_ORDER

if TYPE_CHECKING:
    from otel_scope.engine import Engine, Handle
    from otel_scope.runtime.wrappers import RuntimeProbe

_log = logging.getLogger("otel_scope")

ESCALATION_CALLS = 5  # recorded calls captured with locals after a trigger
MAX_DURATION_S = 300.0  # an escalation ends after this even if the function is not called again
FUNCTION_COOLDOWN_S = 60.0  # one escalation per function per this many seconds (from its start)
PROCESS_PER_MINUTE = 10
MAX_ACTIVE = 5
QUEUE_LIMIT = 8  # escalations waiting for the worker's recompile; more are dropped (counted)
SLOW_WINDOW = 64  # recent durations kept per function
SLOW_MIN_SAMPLES = 20
SLOW_FACTOR = 3.0
SLOW_MIN_EXCESS_NS = 5_000_000  # 5 ms: a 3x jump from microseconds is scheduling noise
_RECOMPUTE_EVERY = 16  # calls between two recomputations of a function's slow threshold
_HISTORY = 50  # finished escalations kept for `otel-scope targets list`
_STATS_LIMIT = 512  # functions with duration statistics before stale ones are dropped
# Exceptions that end iteration: control flow, not faults. KeyboardInterrupt, SystemExit,
# GeneratorExit and asyncio.CancelledError are not Exceptions at all, so they never count either.
CONTROL_FLOW = (StopIteration, StopAsyncIteration)


def _held() -> _thread.LockType:
    held = _thread.allocate_lock()
    held.acquire()
    return held


@dataclass
class Escalation:
    """One escalation of one function: queued, active or finished."""

    function: str
    reason: str  # "exception" or "slow"
    detail: str  # the exception type, or the duration against the function's usual one
    calls: int
    started: float = field(default_factory=time.time)
    seen: int = 0  # escalated calls recorded so far
    state: str = "queued"  # "queued" (waiting for its recompile), "active", "ended", "failed", "dropped"
    outcome: str = ""  # why it ended, or why it could not start
    handle: Handle | None = field(default=None, repr=False)
    timer: threading.Timer | None = field(default=None, repr=False)
    # Held until the worker has dealt with the escalation (switched on, failed or dropped).
    settled: _thread.LockType = field(default_factory=_held, repr=False)

    def row(self) -> dict[str, Any]:
        """The JSON form shown by ``otel-scope targets list``."""
        return {
            "function": self.function,
            "reason": self.reason,
            "detail": self.detail,
            "calls": self.calls,
            "seen": self.seen,
            "state": self.state,
            "outcome": self.outcome,
            "started": self.started,
        }


class _Durations:
    """A function's recent call durations and the slow threshold derived from them."""

    __slots__ = ("count", "p90", "recent", "threshold")

    def __init__(self) -> None:
        self.recent: deque[int] = deque(maxlen=SLOW_WINDOW)
        self.count = 0
        self.p90 = 0
        self.threshold: int | None = None

    def add(self, duration_ns: int) -> bool:
        """Record one duration; True if it is an outlier against the recent ones."""
        threshold = self.threshold
        if threshold is not None and duration_ns >= threshold:
            return True  # not kept: an outlier would inflate the percentile it is compared with
        self.recent.append(duration_ns)
        self.count += 1
        if self.count % _RECOMPUTE_EVERY == 0 and len(self.recent) >= SLOW_MIN_SAMPLES:
            ordered = sorted(self.recent)
            self.p90 = ordered[int(len(ordered) * 0.9) - 1]
            self.threshold = max(int(self.p90 * SLOW_FACTOR), self.p90 + SLOW_MIN_EXCESS_NS)
        return False


class Escalator:
    """Applies the escalation rules; :meth:`on_finish` is the runtime probes' hook."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings
        self._lock = _forksafe.lock()
        self._active: dict[RuntimeProbe, Escalation] = {}
        self._history: deque[Escalation] = deque(maxlen=_HISTORY)
        self._last_start: dict[str, float] = {}
        self._durations: dict[RuntimeProbe, _Durations] = {}
        self._process_budget = RateLimiter(PROCESS_PER_MINUTE / 60.0, burst=PROCESS_PER_MINUTE)
        level = settings.level if LEVEL_ORDER[settings.level] > LEVEL_ORDER["locals"] else "locals"
        self._level = level
        self._closed = False
        self._losses = {"dropped": 0, "failed": 0}
        self._reset_worker()

    def _reset_worker(self) -> None:
        """No worker and nothing queued: at construction, and in a forked child."""
        self._jobs: deque[tuple[RuntimeProbe, Escalation]] = deque()
        # Not an Event: its set() takes a lock, and its Python code would be traced under
        # ``threading:*``. SimpleQueue is C and re-entrant.
        self._wake: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._worker: _thread.LockType | None = None  # held while the worker runs
        self._busy = _thread.allocate_lock()  # held while the worker deals with one escalation

    # -- the hook (runs in the user's thread, after each recorded call) ------------------------
    def on_finish(self, probe: RuntimeProbe, span: Any, exc: BaseException | None) -> None:
        active = self._active.get(probe)
        if active is not None:
            if active.state == "active":  # not while queued: those calls ran without locals
                active.seen += 1
                if active.seen >= active.calls:
                    self._end(probe, active, f"after {active.calls} calls")
            return
        if exc is not None:
            if not isinstance(exc, Exception) or isinstance(exc, CONTROL_FLOW):
                return
            self._escalate(probe, span, "exception", type(exc).__qualname__)
            return
        start = getattr(span, "start_time", None)
        if start is None:
            return
        stats = self._durations.get(probe)
        if stats is None:
            stats = self._new_durations(probe)
        duration = time.time_ns() - start
        if stats.add(duration):
            self._escalate(probe, span, "slow", f"{duration / 1e6:.1f} ms (p90 {stats.p90 / 1e6:.1f} ms)")

    def _new_durations(self, probe: RuntimeProbe) -> _Durations:
        if len(self._durations) >= _STATS_LIMIT:  # forget functions that are no longer traced
            for old in [p for p in self._durations if not p.enabled]:
                del self._durations[old]
        stats = self._durations[probe] = _Durations()
        return stats

    # -- starting and ending -------------------------------------------------------------------
    def _escalate(self, probe: RuntimeProbe, span: Any, reason: str, detail: str) -> None:
        """Queue the escalation for the worker: the failing call pays for this and no more."""
        if probe.deep:  # compile-time capture is on already: nothing deeper to switch on
            return
        name = probe.name
        with self._lock:
            now = time.monotonic()
            if self._closed or probe in self._active:
                return
            last = self._last_start.get(name)
            if last is not None and now - last < FUNCTION_COOLDOWN_S:
                return
            if (
                len(self._active) >= MAX_ACTIVE
                or len(self._jobs) >= QUEUE_LIMIT
                or not self._process_budget.allow()
            ):
                self._losses["dropped"] += 1
                return
            self._last_start[name] = now
            escalation = self._active[probe] = Escalation(name, reason, detail, ESCALATION_CALLS)
            self._jobs.append((probe, escalation))
        if self._worker is None:
            self._start_worker()
        self._wake.put(None)
        if span.is_recording():
            span.add_event(
                semconv.EVENT_ESCALATION,
                {
                    semconv.ESCALATION_REASON: reason,
                    semconv.ESCALATION_CALLS: escalation.calls,
                    semconv.MECHANISM: semconv.MECHANISM_RUNTIME,
                },
            )

    # -- the worker (one daemon thread per process) --------------------------------------------
    def _start_worker(self) -> None:
        # A bare ``_thread`` thread, as the export pipeline's: ``threading.Thread``'s Python code
        # would be traced under ``threading:*``, and it is never joined at exit.
        with self._lock:
            if self._worker is not None or self._closed:
                return
            running = self._worker = _held()
            _closers.add(self)
        _close_at_exit()
        try:
            _thread.start_new_thread(self._run_worker, (running,))
        except RuntimeError:  # the interpreter is shutting down: nothing will be recompiled
            running.release()
            self.close()

    def _run_worker(self, running: _thread.LockType) -> None:
        token = attach(set_value(SUPPRESS_INSTRUMENTATION_KEY, True))  # nothing it runs is traced
        try:
            while not self._closed:
                self._wake.get()
                while (job := self._next_job()) is not None:
                    with self._busy:
                        self._switch_on_queued(*job)
        except BaseException:  # the worker ends quietly; what it left is dropped by close()
            _log.debug("otel-scope: the escalation worker stopped", exc_info=True)
        finally:
            detach(token)
            running.release()

    def _next_job(self) -> tuple[RuntimeProbe, Escalation] | None:
        with self._lock:
            return self._jobs.popleft() if self._jobs and not self._closed else None

    def _switch_on_queued(self, probe: RuntimeProbe, escalation: Escalation) -> None:
        try:
            if escalation.state != "queued":  # ended while it waited (its target was removed)
                return
            failure = self._switch_on(probe, escalation)
            if failure:
                self._finish_early(probe, escalation, "failed", failure)
                _log.debug("otel-scope: escalation of %s failed: %s", escalation.function, failure)
                return
            with self._lock:
                started = escalation.state == "queued"
                if started:
                    escalation.state = "active"
            if not started:  # ended while it was being switched on: undo it
                if escalation.handle is not None:
                    escalation.handle.remove()
                return
            timer = threading.Timer(MAX_DURATION_S, self._expire, (probe, escalation))
            timer.daemon = True
            escalation.timer = timer
            timer.start()
        finally:
            escalation.settled.release()

    def _finish_early(self, probe: RuntimeProbe, escalation: Escalation, state: str, outcome: str) -> None:
        """An escalation that never became active: ``failed`` or ``dropped``, and counted."""
        with self._lock:
            if self._active.get(probe) is escalation:
                del self._active[probe]
            escalation.state, escalation.outcome = state, outcome
            self._history.append(escalation)
            self._losses[state] += 1

    def wait_idle(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until every escalation queued so far is switched on
        or has failed; whether it happened in time."""
        deadline = time.monotonic() + timeout
        with self._lock:
            waiting = [e for e in self._active.values() if e.state == "queued"]
        for escalation in waiting:
            if not escalation.settled.acquire(timeout=max(0.0, deadline - time.monotonic())):
                return False
            escalation.settled.release()
        return True

    def close(self, wait_s: float = 0.0) -> None:
        """Queue no more escalations and drop the queued ones (at exit, or uninstalled).

        A recompile already running finishes (waited for up to ``wait_s``); none starts after
        this."""
        with self._lock:
            self._closed = True
            queued, self._jobs = list(self._jobs), deque()
        for probe, escalation in queued:
            self._finish_early(probe, escalation, "dropped", "otel-scope stopped before its recompile")
            escalation.settled.release()
        self._wake.put(None)
        if wait_s > 0 and self._busy.acquire(timeout=wait_s):
            self._busy.release()

    def losses(self) -> dict[str, int]:
        """Escalations dropped (a budget, a full queue, exit) and failed so far in this process."""
        with self._lock:
            return dict(self._losses)

    def _switch_on(self, probe: RuntimeProbe, escalation: Escalation) -> str:
        """Add the compile-time request; returns why it could not be done ("" on success)."""
        site = self._engine.site_of(probe)
        if site is None:
            return "the function is no longer traced"
        if site.func is None:
            return "compiled code has no locals to capture"
        pattern = parse_pattern(f"{site.module}:{site.qualname}")
        request = Request(
            pattern, mode="hybrid", runtime=False, capture_locals=None, level=self._level, source=ESCALATION
        )
        try:
            handle = self._engine.add(request, function=site.func)
        except Exception as exc:  # the engine guards itself; this guards the program from us
            return f"{type(exc).__name__}: {exc}"
        escalation.handle = handle
        if probe.deep:
            return ""
        entry = next((e for e in self._engine.entries() if e.request is request), None)
        handle.remove()
        why = "; ".join(entry.errors.values()) if entry is not None else ""
        return why or "compile-time capture could not be switched on (no source for the function?)"

    def _expire(self, probe: RuntimeProbe, escalation: Escalation) -> None:
        self._end(probe, escalation, f"after {MAX_DURATION_S:g} s")

    def _end(self, probe: RuntimeProbe, escalation: Escalation, outcome: str) -> None:
        with self._lock:
            if escalation.state != "active":
                return
            escalation.state, escalation.outcome = "ended", outcome
            if self._active.get(probe) is escalation:
                del self._active[probe]
            self._history.append(escalation)
        if escalation.timer is not None:
            escalation.timer.cancel()
        if escalation.handle is not None:
            escalation.handle.remove()

    def end(self, outcome: str, functions: set[str] | None = None) -> None:
        """End the active escalations of ``functions`` (all if None) now.

        Removing a runtime target ends its function's escalation too: escalation deepens a
        runtime-traced function, and once the target is gone the user expects no more spans.
        """
        with self._lock:
            active = [(p, e) for p, e in self._active.items() if functions is None or e.function in functions]
        for probe, escalation in active:
            self._end(probe, escalation, outcome)

    def after_fork_in_child(self) -> None:
        """Fresh lock, no active or queued escalations and no worker: another thread may have held
        the lock at the fork, and neither the worker nor the timers that end escalations survived it."""
        self._lock = _forksafe.lock()
        self._active.clear()
        self._reset_worker()

    # -- what `otel-scope targets list` shows --------------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        """Active escalations first, then the most recent finished ones, newest first."""
        with self._lock:
            active = [e.row() for e in self._active.values()]
            finished = [e.row() for e in reversed(self._history)]
        return active + finished


# Escalators with a worker, closed at exit so that nothing queued starts a recompile then.
_closers: weakref.WeakSet[Escalator] = weakref.WeakSet()
# At exit, how long a recompile already running is waited for: one function's parse and
# compile, milliseconds for most, about a second for a function of thousands of lines.
EXIT_WAIT_S = 1.0
_closing_pid = 0  # the process whose exit closes the escalators (a forked child has another)


def _close_at_exit() -> None:
    """Close every escalator at this process's exit, before the session ends.

    Registered when the first worker starts, so after the session's own exit handler, and so
    run before it (atexit runs last-registered first): a worker that is then free takes no
    queued escalation while the session exports, and one still recompiling is waited for. A
    daemon thread inside libcst's native parser when the interpreter finalizes is stopped in
    Rust code, which aborts the process (SIGABRT after a normal run: seen with escalations of
    ``asyncio.*`` functions queued at exit, a recompile starting as the session ended).
    """
    global _closing_pid
    if _closing_pid != os.getpid():
        _closing_pid = os.getpid()
        atexit.register(_close_all)


def _close_all() -> None:
    for escalator in list(_closers):
        escalator.close(EXIT_WAIT_S)
