"""The local store's write rate, and what a hot loop loses on the way to it, in one run.

    .venv/bin/python benchmarks/bench_store.py [--calls N] [--json FILE]

Spans are made by a real otel-scope runtime target (arguments and return value captured) inside
a session root, so each carries what a traced call really carries.

* ``store write``: spans per second that ``LocalStoreSpanExporter.export`` commits to a fresh
  SQLite file, in batches of the pipeline's size, with nothing else running: the ceiling.
* ``hot loop``: ``--calls`` traced calls made as fast as Python can, then the pipeline shut down
  the way exit does (``EXIT_BUDGET_S``), side by side for the SDK's ``BatchSpanProcessor`` at its
  defaults (the plain OTel way; what otel-scope used before) and otel-scope's
  ``ScopeSpanProcessor``: calls per second while tracing, then how many spans were stored,
  dropped for a full queue, or lost to the exit deadline. ``ratio`` is the traced loop's time
  against the same loop untraced.
* ``sustained drain``: the spans per second the store takes *while* the hot loop runs (both share
  the GIL). A program making traced calls faster than this for long enough fills the queue
  (262,144 spans by default for the store) and then loses spans, counted; slower than this, and
  any burst that fits in the queue, loses nothing.
* ``collector down``: a hybrid target (runtime span plus compile-time locals) called
  ``--down-calls`` times while the only exporter is OTLP/gRPC to a port nothing listens on:
  the process's RSS after each quarter of the run, which must stay flat (the remote queue is
  bounded; what it refuses is counted).
* ``paced``: traced calls at a fixed rate for ``--seconds`` (the program sleeps between ticks, as
  a real one waits on I/O), then the exit path; the largest rate at which every span was stored
  is the figure to compare with a program's real call rate.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import types
from collections.abc import Callable

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_scope import pipeline
from otel_scope._sdk import set_global_provider
from otel_scope.config import Settings, parse_pattern
from otel_scope.engine import Engine
from otel_scope.store import LocalStoreSpanExporter, SpanStore
from otel_scope.targets.planner import Request


def _module() -> types.ModuleType:
    mod = types.ModuleType("bench_store_target")
    exec("def leaf(n):\n    return n + 1\n", mod.__dict__)
    sys.modules[mod.__name__] = mod
    return mod


def _install(processor: object) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(processor)  # type: ignore[arg-type]
    set_global_provider(provider)
    return provider


def _loop(leaf: Callable[[int], int], calls: int) -> float:
    started = time.perf_counter()
    for i in range(calls):
        leaf(i)
    return time.perf_counter() - started


def _stored(path: str) -> int:
    store = SpanStore(path)
    try:
        return sum(s.span_count for s in store.sessions(1000))
    finally:
        store.close()


def store_write(leaf: Callable[[int], int], calls: int, directory: str) -> tuple[float, float]:
    """The store's spans per second alone, and the traced calls per second with no exporter."""
    memory = InMemorySpanExporter()
    provider = _install(SimpleSpanProcessor(memory))
    with provider.get_tracer("bench").start_as_current_span("session"):
        produced_s = _loop(leaf, calls)
    spans = memory.get_finished_spans()
    exporter = LocalStoreSpanExporter(os.path.join(directory, "write.sqlite3"))
    exporter.export(spans[:1])  # create the file: not part of the rate
    batch = pipeline._STORE_DEFAULTS[1]
    started = time.perf_counter()
    for i in range(1, len(spans), batch):
        exporter.export(spans[i : i + batch])
    elapsed = time.perf_counter() - started
    exporter.shutdown()
    return (len(spans) - 1) / elapsed, calls / produced_s


def hot_loop(leaf: Callable[[int], int], calls: int, directory: str, untraced_s: float) -> dict:
    results = {}
    for name in ("otel BatchSpanProcessor", "otel-scope ScopeSpanProcessor"):
        path = os.path.join(directory, f"{name.split()[0]}.sqlite3")
        exporter = LocalStoreSpanExporter(path)
        processor: object
        if name.startswith("otel-scope"):
            processor = pipeline.ScopeSpanProcessor(exporter)
        else:
            processor = BatchSpanProcessor(exporter)
        provider = _install(processor)
        with provider.get_tracer("bench").start_as_current_span("session"):
            elapsed = _loop(leaf, calls)
            exported_while_running = getattr(processor, "exported", None)
        started = time.perf_counter()
        if isinstance(processor, pipeline.ScopeSpanProcessor):
            processor.shutdown(pipeline.EXIT_BUDGET_S * 1000)
            lost = processor.dropped()
        else:  # the SDK's: force_flush ignores its timeout, shutdown waits for its worker
            provider.shutdown()
            lost = {"export queue full (SDK: uncounted)": calls + 1 - _stored(path)}
        exit_s = time.perf_counter() - started
        stored = _stored(path)
        results[name] = {
            "calls per second": calls / elapsed,
            "ratio vs untraced": elapsed / untraced_s,
            "stored": stored,
            "of": calls + 1,
            "lost": lost,
            "exit seconds": exit_s,
            "sustained drain (spans/s)": (exported_while_running or 0) / elapsed
            if exported_while_running is not None
            else None,
        }
    return results


PACED_RATES = (2_000, 5_000, 10_000, 15_000, 20_000, 30_000)


def paced(leaf: Callable[[int], int], rate: int, seconds: float, directory: str) -> dict:
    """``rate`` traced calls per second for ``seconds``, then exit: what was stored and lost."""
    path = os.path.join(directory, f"paced-{rate}.sqlite3")
    processor = pipeline.ScopeSpanProcessor(LocalStoreSpanExporter(path))
    provider = _install(processor)
    total = int(rate * seconds)
    with provider.get_tracer("bench").start_as_current_span("session"):
        started = time.perf_counter()
        made = 0
        while made < total:
            due = min(total, int((time.perf_counter() - started) * rate) + 1)
            while made < due:
                leaf(made)
                made += 1
            time.sleep(0.001)
        elapsed = time.perf_counter() - started
    exit_started = time.perf_counter()
    processor.shutdown(pipeline.EXIT_BUDGET_S * 1000)
    return {
        "rate": rate,
        "achieved calls per second": total / elapsed,
        "stored": _stored(path),
        "of": total + 1,
        "lost": processor.dropped(),
        "exit seconds": time.perf_counter() - exit_started,
    }


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def collector_down(calls: int, directory: str) -> dict:
    """RSS over a hybrid-traced loop exporting to a collector that is down."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    path = os.path.join(directory, "bench_store_hybrid.py")
    with open(path, "w") as f:
        f.write("def leaf(n):\n    m = n + 1\n    total = m * 2\n    return total\n")
    sys.path.insert(0, directory)
    import bench_store_hybrid

    engine = Engine(Settings(mode="hybrid"))
    engine.add(Request(parse_pattern("bench_store_hybrid:leaf"), mode="hybrid", capture_locals=None))
    exporter = OTLPSpanExporter(endpoint="http://127.0.0.1:9", insecure=True, timeout=2)
    logging.getLogger("opentelemetry.exporter.otlp.proto.grpc.exporter").setLevel(logging.CRITICAL)
    processor = pipeline.ScopeSpanProcessor(exporter)
    provider = _install(processor)
    rss = [_rss_mb()]
    with provider.get_tracer("bench").start_as_current_span("session"):
        for _ in range(4):
            _loop(bench_store_hybrid.leaf, calls // 4)
            rss.append(_rss_mb())
    processor.shutdown(pipeline.EXIT_BUDGET_S * 1000)
    engine.remove_all()
    return {"calls": calls, "rss MB at start and after each quarter": rss, "lost": processor.dropped()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each paced run")
    parser.add_argument("--down-calls", type=int, default=200_000, help="calls with the collector down")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    mod = _module()
    untraced_s = _loop(mod.leaf, args.calls)
    engine = Engine(Settings(mode="runtime"))
    engine.add(Request(parse_pattern("bench_store_target:leaf")))
    with tempfile.TemporaryDirectory() as directory:
        write, produced = store_write(mod.leaf, args.calls, directory)
        hot = hot_loop(mod.leaf, args.calls, directory, untraced_s)
        rates = [paced(mod.leaf, rate, args.seconds, directory) for rate in PACED_RATES]
        engine.remove_all()
        down = collector_down(args.down_calls, directory)
    print(f"store write: {write:,.0f} spans/s (batches of {pipeline._STORE_DEFAULTS[1]})")
    print(
        f"hot loop of {args.calls:,} traced calls (untraced: {args.calls / untraced_s:,.0f} calls/s; "
        f"traced into memory, no exporter: {produced:,.0f} calls/s)"
    )
    for name, r in hot.items():
        drain = r["sustained drain (spans/s)"]
        print(
            f"  {name:<30} {r['calls per second']:>9,.0f} calls/s  x{r['ratio vs untraced']:.0f}  "
            f"stored {r['stored']:,} of {r['of']:,}  lost {r['lost'] or 0}  "
            f"exit {r['exit seconds']:.2f} s"
            + (f"  drain while running {drain:,.0f} spans/s" if drain else "")
        )
    print(f"paced: each rate for {args.seconds:g} s, then exit (budget {pipeline.EXIT_BUDGET_S:g} s)")
    for r in rates:
        print(
            f"  {r['rate']:>7,} calls/s (made {r['achieved calls per second']:>7,.0f})  "
            f"stored {r['stored']:,} of {r['of']:,}  lost {r['lost'] or 0}  exit {r['exit seconds']:.2f} s"
        )
    kept = [r for r in rates if not r["lost"] and r["stored"] == r["of"]]
    print(
        f"largest paced rate with nothing lost: {max(r['rate'] for r in kept):,} calls/s"
        if kept
        else "every paced rate lost spans"
    )
    quarters = " -> ".join(f"{mb:.0f}" for mb in down["rss MB at start and after each quarter"])
    print(f"collector down, {args.down_calls:,} hybrid calls: RSS MB {quarters}; lost {down['lost'] or 0}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "store write (spans/s)": write,
                    "traced calls/s, no exporter": produced,
                    "hot loop": hot,
                    "paced": rates,
                    "collector down": down,
                },
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
