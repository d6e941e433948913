"""Per-function call sampling, so that targeting a whole package costs a bounded share of the run.

Capture of every call of every function of a package costs many times the program itself (a
span is ~10 µs; libraries make millions of sub-microsecond calls). A :class:`CallSampler` is the
gate each instrumented function asks *before anything is allocated* for a call. It keeps:

* the first ``call_sample_first`` calls of the function, in full;
* after that, at most one call per *interval* (``1 / call_sample_rate`` seconds) per function;
* every call of a function a pattern named exactly: such functions get no sampler at all;
* every call that raises: the mechanism records it even when sampled out (see the wrappers),
  and the function's next ``call_sample_first`` calls are kept in full again (:meth:`reopen`).

The interval is shared by all functions and adapted by the process-wide :class:`Budget`: the
estimated instrumentation time of kept calls is added up (:meth:`Budget.spend`), and when it exceeds
``overhead_budget`` of the elapsed time the interval doubles; when it falls well below, the
interval halves back toward the configured rate (the prior art: Logfire's auto-trace
``min_duration``, ddtrace's per-probe rates and global budget).

A call left out costs no call into otel-scope. The sampler is its function's :class:`Gate`: the
entry test (a rewritten function's prologue, a code trampoline) calls ``gate.tick()``, a C
method that gives the call its number, and runs the function untraced when the number is below
``gate.next_check``; only the others go on to :meth:`CallSampler.admit_at`, which keeps the first
calls and reads the clock. The clock is read only every ``stride`` calls, and the stride doubles
while the answer stays no (up to :data:`MAX_STRIDE`). The numbering is the count of calls: the
calls left out are the calls numbered less those kept (one Python ``int`` that only admitted
calls update), and kept spans say how many were left out before them (``otel_scope.sampled_out``);
the session root span carries the totals (:func:`summary`), so the user always knows what was not
recorded.

No lock: the numbering is one C call, atomic under the GIL, so no call goes uncounted; when
threads race in :meth:`CallSampler.admit_at` a lost update of ``kept`` (one more call counted as
left out) or an extra kept call costs nothing that matters for a gate that exists to bound
overhead, while a lock would serialize every call.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import weakref
from collections.abc import Callable
from time import monotonic_ns
from typing import Any, cast

from otel_scope import semconv

# What one kept call costs, estimated rather than timed so that kept calls pay no extra clock
# reads. Measured by benchmarks/bench_package_wide.py on a 2-core machine: a span with its
# arguments, the SDK, and its export on the batch thread (which holds the GIL while it encodes
# and stores) costs 100-400 µs of the program's time; each capture, event or generator item on
# it a few µs more.
SPAN_COST_NS = 100_000
ITEM_COST_NS = 3_000
MAX_STRIDE = 256  # sampled-out calls between two clock reads, at most
WINDOW_NS = 200_000_000  # the budget compares spend with elapsed time over this window
MAX_INTERVAL_NS = 60_000_000_000  # the adapted interval never exceeds one kept call a minute
NEVER = sys.maxsize  # the interval of rate 0: after the first calls, only errors are recorded
TOP_FUNCTIONS = 20  # functions named on the session span, most sampled-out first


class Budget:
    """The process-wide sampling policy: first-N, the adapted interval, the overhead budget."""

    __slots__ = (
        "base_interval_ns",
        "enabled",
        "first",
        "interval_ns",
        "overhead",
        "retired",
        "samplers",
        "spent_ns",
        "window_start",
    )

    def __init__(self) -> None:
        self.enabled = True
        self.first = 5
        self.base_interval_ns = 100_000_000  # 10 calls per second per function
        self.interval_ns = self.base_interval_ns
        self.overhead = 0.1
        self.spent_ns = 0
        self.window_start = monotonic_ns()
        # The samplers of functions instrumented now, weakly: a target removed frees its probe and
        # sampler, whose counts go to ``retired`` (calls, sampled out, by function name), so live
        # add/remove cycles keep memory bounded and the session span still counts what was left out.
        self.samplers: weakref.WeakSet[CallSampler] = weakref.WeakSet()
        self.retired: dict[str, list[int]] = {}

    def spend(self, items: int = 0) -> None:
        """One kept call was recorded, with ``items`` captures, events or generator items."""
        self.spent_ns += SPAN_COST_NS + ITEM_COST_NS * items

    def spend_items(self, items: int) -> None:
        """A kept call's span took ``items`` more items (a generator's yields) after it started."""
        self.spent_ns += ITEM_COST_NS * items

    def adapt(self, now: int) -> None:
        """Once per window: double the interval if over budget, halve it if well under."""
        elapsed = now - self.window_start
        if elapsed < WINDOW_NS:
            return
        used = self.spent_ns / elapsed
        if self.overhead > 0:
            if used > self.overhead and self.interval_ns < MAX_INTERVAL_NS:
                self.interval_ns = min(self.interval_ns * 2, MAX_INTERVAL_NS)
            elif used < self.overhead / 4 and self.interval_ns > self.base_interval_ns:
                self.interval_ns = max(self.interval_ns // 2, self.base_interval_ns)
        self.spent_ns = 0
        self.window_start = now


_budget = Budget()
_lock = threading.Lock()


def configure(settings: Any) -> None:
    """Adopt the sampling settings of ``settings`` (an :class:`otel_scope.config.Settings`)."""
    _budget.enabled = bool(settings.call_sampling)
    _budget.first = int(settings.call_sample_first)
    rate = float(settings.call_sample_rate)
    _budget.base_interval_ns = int(1e9 / rate) if rate > 0 else NEVER
    _budget.interval_ns = _budget.base_interval_ns
    _budget.overhead = float(settings.overhead_budget)
    with _lock:
        samplers = list(_budget.samplers)
    for sampler in samplers:  # functions instrumented already follow the new settings too
        sampler.first_until = sys.maxsize if not _budget.enabled else sampler.numbered
        sampler.reopen()


def budget() -> Budget:
    return _budget


class Gate:
    """What an entry test reads before anything else of otel-scope's runs (see the module doc):
    a call whose number (``tick()``, a C method) is below ``next_check`` is left out on the spot,
    any other goes on to its probe. :class:`CallSampler` is the gate of a sampled function; a
    probe without one uses :data:`OPEN` or :data:`SHUT`."""

    __slots__ = ("next_check", "tick")

    def __init__(self, tick: Callable[[], int], next_check: int) -> None:
        self.tick = tick
        self.next_check = next_check


_ZERO = itertools.repeat(0).__next__
#: Every call goes on to the probe, unnumbered: a function whose calls are all kept.
OPEN = Gate(_ZERO, 0)
#: Every call runs untraced, uncounted: a probe switched off.
SHUT = Gate(_ZERO, 1)
_END = sys.maxsize  # past the last call number: never reached


class CallSampler(Gate):
    """One function's gate: a call the entry test does not leave out asks :meth:`admit_at`
    whether it is recorded (see the module doc)."""

    __slots__ = (
        "__weakref__",
        "_left",
        "base",
        "first_until",
        "kept",
        "last_kept",
        "name",
        "stride",
        "taken",
    )

    def __init__(self, name: str, first: int) -> None:
        numbers = iter(range(1, _END))
        super().__init__(numbers.__next__, 0)  # 0: every call asks admit_at until the first are kept
        # The numbers not given yet, which tell the count (a range iterator says, a count() does not).
        self._left: Callable[[], int] = cast(Any, numbers).__length_hint__
        self.name = name
        self.base = 0  # the number of the last call before the fork that made this process
        self.first_until = first  # calls up to this number are kept in full
        self.stride = 1
        self.last_kept = monotonic_ns()  # the rate counts from the function's instrumentation
        self.kept = 0  # calls admitted since ``base``
        self.taken = 0  # calls left out that kept spans have reported already (take_pending)

    def __del__(self) -> None:
        # The function is no longer instrumented. No lock: this may run on any thread, inside any
        # call (even one holding _lock); a count lost to a race is what the module doc accepts.
        # At interpreter teardown the module's globals may be gone already: say nothing then.
        try:
            if self.calls:
                counts = _budget.retired.setdefault(self.name, [0, 0])
                counts[0] += self.calls
                counts[1] += self.sampled_out
        except Exception:
            pass

    @property
    def numbered(self) -> int:
        """The number of the latest call: every call since the function was instrumented."""
        return _END - 1 - self._left()

    @property
    def calls(self) -> int:
        """Calls seen by this process (a forked child counts its own only)."""
        return self.numbered - self.base

    @property
    def sampled_out(self) -> int:
        """Calls left out in total: every call seen that was not kept."""
        return self.calls - self.kept

    @property
    def pending(self) -> int:
        """Calls left out since the last kept call that reported them (put on the next kept span).

        ``sampled_out - taken``, spelled out: every kept span reads it, and each property in
        between would cost a call."""
        return _END - 1 - self._left() - self.base - self.kept - self.taken

    def admit_at(self, call: int) -> bool:
        """Whether to record call number ``call``, which the entry test did not leave out."""
        if call <= self.first_until:
            self.kept += 1
            return True
        now = monotonic_ns()
        b = _budget
        b.adapt(now)
        if now - self.last_kept >= b.interval_ns:
            self.last_kept = now
            self.stride = 1
            self.next_check = call + 1
            self.kept += 1
            return True
        stride = self.stride = min(self.stride * 2, MAX_STRIDE)
        self.next_check = call + stride
        return False

    def recorded_late(self) -> None:
        """A call left out is recorded after all (it raised): it counts as kept."""
        self.kept += 1

    def left_out_late(self) -> None:
        """A call counted by :meth:`recorded_late` was not recorded after all."""
        self.kept -= 1

    def take_pending(self) -> int:
        """Calls left out since the previous kept call (reset): the kept span's count."""
        pending = self.pending
        self.taken += pending
        return pending

    def reopen(self) -> None:
        """A call raised: keep the next ``first`` calls in full, to see what follows an error."""
        self.first_until = max(self.first_until, self.numbered + _budget.first)
        self.next_check = 0
        self.stride = 1


def sampler_for(name: str, named_exactly: bool) -> CallSampler | None:
    """The gate for a new instrumented function, or ``None``: keep every call (named exactly,
    or sampling is off)."""
    if named_exactly or not _budget.enabled:
        return None
    sampler = CallSampler(name, _budget.first)
    with _lock:
        _budget.samplers.add(sampler)
    return sampler


def _count_afresh_in_child() -> None:
    """A forked child counts only its own calls (its parent reports those made before the fork),
    and keeps each function's first calls in full again: every worker of a pre-fork server
    shows how its functions started."""
    _budget.retired.clear()
    for sampler in list(_budget.samplers):
        sampler.base = sampler.numbered
        sampler.kept = sampler.taken = 0
        if sampler.first_until != sys.maxsize:  # sampling switched off keeps every call
            sampler.first_until = sampler.base + _budget.first
        sampler.next_check = 0
        sampler.stride = 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_count_afresh_in_child)


def summary() -> dict[str, Any]:
    """Session root span attributes: how many calls sampling left out, and of which functions
    (those instrumented now and those whose targets were removed, by name)."""
    with _lock:
        samplers = list(_budget.samplers)
    by_name: dict[str, list[int]] = {}
    for name, (calls, left) in list(_budget.retired.items()):
        by_name[name] = [calls, left]
    for sampler in samplers:
        counts = by_name.setdefault(sampler.name, [0, 0])
        counts[0] += sampler.calls
        counts[1] += sampler.sampled_out
    if not by_name:
        return {}
    left_out = sorted(((name, left) for name, (_calls, left) in by_name.items() if left), key=lambda t: -t[1])
    return {
        semconv.SAMPLING_CALLS: sum(calls for calls, _left in by_name.values()),
        semconv.SAMPLING_SAMPLED_OUT: sum(left for _name, left in left_out),
        semconv.SAMPLING_FUNCTIONS: len(by_name),
        semconv.SAMPLING_FUNCTIONS_SAMPLED_OUT: len(left_out),
        semconv.SAMPLING_TOP: [f"{name}={left}" for name, left in left_out[:TOP_FUNCTIONS]],
        semconv.SAMPLING_INTERVAL_MS: _budget.interval_ns / 1e6,
    }
