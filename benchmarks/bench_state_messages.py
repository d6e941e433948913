"""State capture and message hand-offs: what they cost, in one run.

    .venv/bin/python benchmarks/bench_state_messages.py [--calls N] [--rounds R] [--json FILE]

**State capture** (nanoseconds per call, recording, best of several repeats): a method of an
object with 10 attributes (4 ints, 2 strings, a float, None, a 5-item list and a 5-item dict),
traced by otel-scope in runtime mode

* ``bare``: not traced;
* ``traced``: a runtime target, no state capture;
* ``traced + state, unchanged``: a ``--scope-state`` target whose call changes nothing (the cost
  of the two snapshots and the comparison: no event);
* ``traced + state, 1 change``: the same, the call increments one int (one ``otel_scope.state``
  event);
* ``traced + state, dict mutated``: the call mutates the dict in place (one event).

**Untraced hand-offs** (nanoseconds per ``put`` + ``get`` pair in one thread, nothing traced):
otel-scope's message patches installed versus not installed, alternated ``--rounds`` times so
that drift hits both alike; the minimum and the median over rounds are reported. Measured with no
current span, and with a session's root span current (as on the main thread under
``opentelemetry-instrument``). ``queue.SimpleQueue`` is not patched at all (a C type) and is
kept in the table as a control: its two columns should agree.

The SDK pipeline is real: a ``BatchSpanProcessor`` feeding an exporter that discards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import statistics
import sys
import timeit
import types
from collections.abc import Callable, Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from otel_scope._sdk import set_global_provider
from otel_scope.capture import Serializer
from otel_scope.config import Settings, parse_pattern
from otel_scope.engine import Engine
from otel_scope.runtime import messages
from otel_scope.sessions import state as session_state
from otel_scope.targets.planner import Request

MODULE = "bench_state_target"
SOURCE = """
class Account:
    def __init__(self):
        self.a, self.b, self.c, self.d = 1, 2, 3, 4
        self.name, self.owner = "checking", "ada"
        self.rate = 0.05
        self.closed = None
        self.history = [1, 2, 3, 4, 5]
        self.limits = {"day": 1, "week": 2, "month": 3, "year": 4, "ever": 5}

    def touch(self):
        self.a += 1

    def look(self):
        return self.a

    def mutate(self):
        self.limits["day"] += 1
"""


class _Discard(SpanExporter):
    def export(self, spans: Sequence) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _install_provider() -> TracerProvider:
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(BatchSpanProcessor(_Discard(), max_queue_size=1 << 16))
    set_global_provider(provider)
    return provider


def _classes() -> tuple[type, type, type]:
    """Three identical classes in a fresh module: bare, traced, traced with state capture."""
    mod = types.ModuleType(MODULE)
    for name in ("Bare", "Traced", "Stateful"):
        exec(SOURCE.replace("class Account", f"class {name}"), mod.__dict__)
    sys.modules[MODULE] = mod
    return mod.Bare, mod.Traced, mod.Stateful


def per_call_ns(call: Callable[[], object], calls: int, repeats: int = 7) -> float:
    return min(timeit.repeat(call, number=calls, repeat=repeats)) / calls * 1e9


def measure_state(calls: int) -> dict[str, float]:
    bare_cls, traced_cls, stateful_cls = _classes()
    engine = Engine(Settings(mode="runtime"))
    engine.add(Request(parse_pattern(f"{MODULE}:Traced.*")))
    engine.add(Request(parse_pattern(f"{MODULE}:Stateful.*"), state=True))
    bare, traced_obj, stateful = bare_cls(), traced_cls(), stateful_cls()
    provider = _install_provider()
    try:
        # As under opentelemetry-instrument: every call runs inside the session's root span.
        with provider.get_tracer("bench").start_as_current_span("session"):
            return {
                "bare": per_call_ns(bare.touch, calls),
                "traced": per_call_ns(traced_obj.touch, calls),
                "traced + state, unchanged": per_call_ns(stateful.look, calls),
                "traced + state, 1 change": per_call_ns(stateful.touch, calls),
                "traced + state, dict mutated": per_call_ns(stateful.mutate, calls),
            }
    finally:
        engine.remove_all()
        provider.shutdown()


def _pairs() -> dict[str, Callable[[], Callable[[], object]]]:
    """Makers of one put+get pair per hand-off; called after (un)installing, so each gets the
    queue class otel-scope's patches currently provide."""

    def std(cls_name: str) -> Callable[[], object]:
        q = getattr(queue, cls_name)()
        put, get = q.put, q.get
        return lambda: (put(1), get())

    def aio() -> Callable[[], object]:
        q: asyncio.Queue = asyncio.Queue()
        put, get = q.put_nowait, q.get_nowait
        return lambda: (put(1), get())

    return {
        "queue.Queue": lambda: std("Queue"),
        "queue.PriorityQueue": lambda: std("PriorityQueue"),
        "asyncio.Queue (nowait)": aio,
        "queue.SimpleQueue": lambda: std("SimpleQueue"),
    }


def measure_handoffs(calls: int, rounds: int) -> dict[str, dict[str, dict[str, float]]]:
    provider = _install_provider()
    root = provider.get_tracer("bench").start_span("otel_scope.session")
    session_ctx = trace.set_span_in_context(root)
    out: dict[str, dict[str, dict[str, float]]] = {}
    try:
        for where in ("no current span", "session root span current"):
            token = None
            if where != "no current span":
                session_state.set_fallback_context(session_ctx)
                token = otel_context.attach(session_ctx)
            samples: dict[str, dict[str, list[float]]] = {}
            for _ in range(rounds):
                for installed in (False, True):
                    if installed:
                        messages.install(Serializer())
                    for name, make in _pairs().items():
                        key = "installed" if installed else "not installed"
                        samples.setdefault(name, {}).setdefault(key, []).append(
                            per_call_ns(make(), calls, repeats=3)
                        )
                    if installed:
                        messages.uninstall()
            if token is not None:
                otel_context.detach(token)
                session_state.set_fallback_context(None)
            out[where] = {
                name: {
                    f"{key} {stat}": fn(values)
                    for key, values in by_state.items()
                    for stat, fn in (("min", min), ("median", statistics.median))
                }
                for name, by_state in samples.items()
            }
    finally:
        root.end()
        provider.shutdown()
    return out


def report(state: dict[str, float], handoffs: dict) -> str:
    lines = [
        f"Python {sys.version.split()[0]}",
        "",
        "State capture, object with 10 attributes (ns per call, recording, best of 7)",
        "",
        "| variant | ns per call | over traced |",
        "|---|---:|---:|",
    ]
    for name, ns in state.items():
        extra = "" if name in ("bare", "traced") else f"+{ns - state['traced']:.0f}"
        lines.append(f"| {name} | {ns:.0f} | {extra} |")
    for where, rows in handoffs.items():
        lines += [
            "",
            f"Untraced put + get pair, {where} (ns; min / median over rounds)",
            "",
            "| hand-off | not installed | installed | difference (min) | difference (median) |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, r in rows.items():
            off_min, on_min = r["not installed min"], r["installed min"]
            off_med, on_med = r["not installed median"], r["installed median"]
            lines.append(
                f"| {name} | {off_min:.0f} / {off_med:.0f} | {on_min:.0f} / {on_med:.0f} "
                f"| {on_min - off_min:+.0f} ({(on_min / off_min - 1) * 100:+.1f}%) "
                f"| {on_med - off_med:+.0f} ({(on_med / off_med - 1) * 100:+.1f}%) |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--json", help="also write the raw figures to this file")
    args = parser.parse_args(argv)
    state = measure_state(args.calls)
    handoffs = measure_handoffs(args.calls * 5, args.rounds)
    print(report(state, handoffs))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"state": state, "handoffs": handoffs}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
