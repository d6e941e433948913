"""What one recorded call costs, per mechanism, on the issue's function (issue 14, per call).

    .venv/bin/python benchmarks/bench_recorded_call.py [--quick]

The goal: compile-time capture of a function with two assignments and a 3-iteration loop costs
at most 1.5x a runtime span of the same function. One module, imported from a real file,
holds the function four times; each copy is instrumented one way, every call recorded (an SDK
tracer provider that samples everything and exports nothing, so the export pipeline is not
measured), and timed per call, fastest of ``repeat`` rounds (each round times every variant in turn):

* plain; the plain OTel way (a decorator that opens a span with the function's name);
* runtime: an otel-scope runtime target (span with arguments and return value);
* compile-time: the function rewritten at level ``locals`` (its span, plus one event per
  changed local and the loop's iterations, as loop sampling keeps them);
* hybrid: both at once (one span: the runtime one, carrying the compile-time events).

A compile-time event's attributes are built when first read, by the export thread as a rule
(see ``otel_scope._sdk.append_deferred_events``), so the first table is what a call costs the
thread that makes it. The second table counts the export too: the same calls with otel-scope's
export pipeline and an exporter that encodes every span as OTLP protobuf (what the OTLP
exporters send, minus the network), timed as CPU time of the whole process (every thread)
until the pipeline has exported them all.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
import tempfile
import textwrap
import time
import timeit
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_scope._sdk import set_global_provider
from otel_scope.compile_time import configure
from otel_scope.config import Settings, parse_pattern
from otel_scope.engine import Engine
from otel_scope.pipeline import ScopeSpanProcessor
from otel_scope.targets.planner import Request

BODY = """\
def {name}(n):
    total = 0
    label = "squares"
    for i in range(n):
        total += i * i
    return label, total
"""
VARIANTS = ("plain", "otel", "runtime", "compile_time", "hybrid")


def _module() -> Any:
    directory = Path(tempfile.mkdtemp(prefix="otel-scope-bench-"))
    source = "\n\n".join(BODY.format(name=f"work_{variant}") for variant in VARIANTS)
    (directory / "bench_recorded.py").write_text(textwrap.dedent(source))
    sys.path.insert(0, str(directory))
    return importlib.import_module("bench_recorded")


def _otel_decorator(func: Callable[..., Any]) -> Callable[..., Any]:
    tracer = trace.get_tracer("plain-otel")
    name = f"{func.__module__}.{func.__qualname__}"

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with tracer.start_as_current_span(name):
            return func(*args, **kwargs)

    return wrapper


class _EncodingExporter(SpanExporter):
    """Encodes each batch as an OTLP request and throws it away: the export thread's CPU work."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        encode_spans(spans).SerializeToString()
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


def per_call_us(calls: dict[str, Callable[[], object]], number: int, repeat: int) -> dict[str, float]:
    """Each call's time in µs, the fastest of ``repeat`` rounds; every round times every call in
    turn, so a change in the machine's load reaches all of them alike (the ratios are the point)."""
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(repeat):
        for name, call in calls.items():
            best[name] = min(best[name], timeit.timeit(call, number=number))
    return {name: seconds / number * 1e6 for name, seconds in best.items()}


def per_call_cpu_us(
    call: Callable[[], object], number: int, repeat: int, flush: Callable[[], object]
) -> float:
    """Process CPU time (all threads) per call, until the export of every call's span is done."""
    best = float("inf")
    for _ in range(repeat):
        flush()
        start = time.process_time()
        for _ in range(number):
            call()
        flush()
        best = min(best, time.process_time() - start)
    return best / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (noisier)")
    options = parser.parse_args()
    repeat, number = (5, 1000) if options.quick else (15, 2000)
    provider = TracerProvider()  # records every span; no processor for the first table
    set_global_provider(provider)
    module = _module()
    settings = Settings(mode="hybrid", call_sampling=False, escalation="off")
    configure(settings)
    engine = Engine(settings)
    engine.add(Request(parse_pattern("bench_recorded:work_runtime"), mode="runtime"))
    engine.add(
        Request(
            parse_pattern("bench_recorded:work_compile_time"),
            mode="compile_time",
            runtime=False,
            capture_locals=None,
            level="locals",
        )
    )
    engine.add(Request(parse_pattern("bench_recorded:work_hybrid"), mode="hybrid", capture_locals=None))
    for variant in ("runtime", "compile_time", "hybrid"):
        (row,) = [r for r in engine.active() if r["function"].endswith(f"work_{variant}")]
        print(f"{variant:13} {row['mechanism']}, {row['installed'] or 'recompiled'}")
    calls = {
        "plain": module.work_plain,
        "otel": _otel_decorator(module.work_otel),
        "runtime": module.work_runtime,
        "compile_time": module.work_compile_time,
        "hybrid": module.work_hybrid,
    }
    times = per_call_us({name: functools.partial(f, 3) for name, f in calls.items()}, number, repeat)
    _table(f"one recorded call: two assignments and a 3-iteration loop (µs, best of {repeat})", times)
    exporter = _EncodingExporter()
    processor = ScopeSpanProcessor(exporter)
    provider.add_span_processor(processor)
    flush = functools.partial(processor.force_flush, 30_000)
    cpu = {name: per_call_cpu_us(lambda f=f: f(3), number, repeat, flush) for name, f in calls.items()}
    _table(f"the same, export to OTLP protobuf included (CPU µs of all threads, best of {repeat})", cpu)
    print(f"  ({exporter.spans} spans encoded)")
    engine.remove_all()
    processor.shutdown()


def _table(title: str, times: dict[str, float]) -> None:
    print(f"\n{title}")
    for name, us in times.items():
        against = "" if name in ("plain", "runtime") else f"{us / times['runtime']:5.2f}x runtime"
        print(f"  {name:13} {us:8.3f}  {us / times['plain']:6.1f}x plain  {against}")


if __name__ == "__main__":
    main()
