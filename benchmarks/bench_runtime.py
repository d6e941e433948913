"""Runtime mode: per-call cost against the bare function and the plain OTel way, in one run.

    .venv/bin/python benchmarks/bench_runtime.py [--calls N] [--json FILE]

Compared side by side, each as nanoseconds per call (best of several repeats):

* ``bare``: the undecorated function.
* ``otel decorator``: a hand-written ``functools.wraps`` decorator using the plain OTel API,
  ``tracer.start_as_current_span`` with the same ``code.*`` attributes (what a user would write).
* ``otel-scope``: the function traced by an otel-scope target (runtime mode, arguments and return
  value captured; reached through a code trampoline), ``otel-scope, wrapper`` the same probe
  through a wrapt wrapper at the attribute (what objects without code of their own get), and
  ``otel-scope, no values`` with capture of arguments/return switched off, and
  ``otel-scope, pkg.*`` selected by a wildcard, so call sampling keeps its first calls and then
  about 10 a second: nearly all its calls are *left out*, the cost a package-wide target pays
  on most calls.

in three states: recording (``ALWAYS_ON``), sampled out (``ParentBased(ALWAYS_OFF)``), and
switched off (otel-scope's probe disabled: the target still installed). The SDK pipeline is real:
a ``BatchSpanProcessor`` feeding an exporter that discards, so export cost is not measured.
Memory: bytes still allocated after many recorded calls (must stay flat: bounded memory).
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import sys
import timeit
import tracemalloc
import types
from collections.abc import Callable, Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

from otel_scope._sdk import set_global_provider
from otel_scope.config import Settings, parse_pattern
from otel_scope.engine import Engine
from otel_scope.runtime.wrappers import RuntimeProbe, install
from otel_scope.targets.planner import Request


class _Discard(SpanExporter):
    def export(self, spans: Sequence) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _install(sampler) -> TracerProvider:
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(_Discard(), max_queue_size=1 << 16))
    set_global_provider(provider)
    return provider


def _module() -> types.ModuleType:
    """A fresh module with identical functions, one per variant, so wrappers never stack."""
    mod = types.ModuleType("bench_target")
    exec(
        "def bare(a, b):\n    return a + b\n"
        "def scope(a, b):\n    return a + b\n"
        "def scope_novalues(a, b):\n    return a + b\n"
        "def scope_wrapper(a, b):\n    return a + b\n"
        "def handwritten(a, b):\n    return a + b\n",
        mod.__dict__,
    )
    sys.modules[mod.__name__] = mod
    return mod


def _sampled_module() -> types.ModuleType:
    """A module whose one function is selected by ``bench_sampled:*`` (a wildcard: call-sampled)."""
    mod = types.ModuleType("bench_sampled")
    exec("def scope_sampled(a, b):\n    return a + b\n", mod.__dict__)
    sys.modules[mod.__name__] = mod
    return mod


def otel_decorator(func: Callable) -> Callable:
    """The plain-OTel baseline: what a user writes by hand with the same code.* attributes."""
    tracer = trace.get_tracer("handwritten")
    code = func.__code__
    name = f"{func.__module__}.{func.__qualname__}"
    attrs = {
        "code.function.name": name,
        "code.file.path": code.co_filename,
        "code.line.number": code.co_firstlineno,
    }

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with tracer.start_as_current_span(name, attributes=attrs):
            return func(*args, **kwargs)

    return wrapper


def per_call_ns(call: Callable[[], object], calls: int, repeats: int = 7) -> float:
    timer = timeit.Timer(call)
    return min(timer.repeat(repeat=repeats, number=calls)) / calls * 1e9


def measure(calls: int) -> dict:
    mod = _module()
    hand = otel_decorator(mod.handwritten)
    engine = Engine(Settings(mode="runtime"))
    quiet = Engine(Settings(mode="runtime", capture_args=False, capture_return=False))
    engine.add(Request(parse_pattern("bench_target:scope")))
    quiet.add(Request(parse_pattern("bench_target:scope_novalues")))
    sampled_mod = _sampled_module()
    engine.add(Request(parse_pattern("bench_sampled:*")))
    # The attribute wrapper (what objects without code of their own get), beside the trampoline.
    wrapped_probe = RuntimeProbe(
        mod.scope_wrapper, "bench_target", "scope_wrapper", target="bench", serializer=engine.serializer
    )
    install(mod, "scope_wrapper", wrapped_probe)
    scope, novalues, wrapped = mod.scope, mod.scope_novalues, mod.scope_wrapper
    sampled = sampled_mod.scope_sampled
    variants = {
        "bare": lambda: mod.bare(1, 2),
        "otel decorator": lambda: hand(1, 2),
        "otel-scope": lambda: scope(1, 2),
        "otel-scope, wrapper": lambda: wrapped(1, 2),
        "otel-scope, no values": lambda: novalues(1, 2),
        "otel-scope, pkg.*": lambda: sampled(1, 2),
    }
    results: dict[str, dict[str, float]] = {}
    for state, sampler in (("recording", ALWAYS_ON), ("sampled out", ParentBased(ALWAYS_OFF))):
        provider = _install(sampler)
        # As under opentelemetry-instrument: every call runs inside the session's root span.
        with provider.get_tracer("bench").start_as_current_span("session"):
            results[state] = {name: per_call_ns(fn, calls) for name, fn in variants.items()}
        provider.shutdown()
    _install(ALWAYS_ON)
    named = ((engine, "scope"), (quiet, "scope_novalues"), (engine, "scope_sampled"))
    probes = [e.probe_for(f"bench_{'sampled' if n == 'scope_sampled' else 'target'}.{n}") for e, n in named]
    probes.append(wrapped_probe)
    for probe in probes:
        probe.enabled = False
    results["switched off"] = {
        name: per_call_ns(fn, calls) for name, fn in variants.items() if name != "otel decorator"
    }
    for probe in probes:
        probe.enabled = True
    results["memory"] = _retained_bytes(scope, hand, calls)
    engine.remove_all()
    quiet.remove_all()
    return results


def _retained_bytes(scope: Callable, hand: Callable, calls: int) -> dict[str, float]:
    """Bytes still allocated after ``calls`` recorded calls, after a warm-up of the same size."""
    out = {}
    for name, fn in (("otel-scope", scope), ("otel decorator", hand)):
        provider = _install(ALWAYS_ON)
        for _ in range(calls):
            fn(1, 2)
        provider.force_flush()
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        for _ in range(calls):
            fn(1, 2)
        provider.force_flush()
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        retained = sum(s.size_diff for s in after.compare_to(before, "filename"))
        out[name] = retained / calls
        provider.shutdown()
    return out


def report(results: dict) -> str:
    rec, out, off = results["recording"], results["sampled out"], results["switched off"]
    lines = [
        f"Python {sys.version.split()[0]}, ns per call (best of 7)",
        "",
        "| variant | recording | sampled out | switched off |",
        "|---|---:|---:|---:|",
    ]
    for name in rec:
        lines.append(
            f"| {name} | {rec[name]:.0f} | {out[name]:.0f} | {off[name]:.0f} |"
            if name in off
            else f"| {name} | {rec[name]:.0f} | {out[name]:.0f} | n/a |"
        )
    bare = rec["bare"]
    lines += [
        "",
        f"recording: otel-scope / otel decorator = {rec['otel-scope'] / rec['otel decorator']:.2f}x "
        f"(no values: {rec['otel-scope, no values'] / rec['otel decorator']:.2f}x); "
        f"otel-scope / bare = {rec['otel-scope'] / bare:.1f}x",
        f"sampled out: otel-scope adds {out['otel-scope'] - out['bare']:.0f} ns per call "
        f"(otel decorator adds {out['otel decorator'] - out['bare']:.0f} ns)",
        f"switched off: otel-scope adds {off['otel-scope'] - off['bare']:.0f} ns per call",
        f"left out by call sampling (a pkg.* target): otel-scope adds "
        f"{rec['otel-scope, pkg.*'] - bare:.0f} ns per call",
        f"trampoline vs wrapper: recording {rec['otel-scope'] / rec['otel-scope, wrapper']:.2f}x, "
        f"sampled out adds {out['otel-scope'] - out['otel-scope, wrapper']:+.0f} ns, "
        f"switched off adds {off['otel-scope'] - off['otel-scope, wrapper']:+.0f} ns",
        f"memory retained per recorded call: otel-scope {results['memory']['otel-scope']:.2f} B, "
        f"otel decorator {results['memory']['otel decorator']:.2f} B",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--json", help="also write the raw figures to this file")
    args = parser.parse_args(argv)
    results = measure(args.calls)
    print(report(results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
