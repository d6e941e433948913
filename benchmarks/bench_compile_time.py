"""Compile-time mode's costs, side by side, in one run.

    .venv/bin/python benchmarks/bench_compile_time.py [--quick]

What it measures (each figure is the best of several repeats, in microseconds):

1. Per captured assignment while recording: a function of 20 straight-line assignments,
   rewritten, against the same function with a hand-written ``span.add_event(...)`` after each
   assignment carrying the same attributes as ours (and a minimal two-attribute variant). The
   span's own cost is subtracted from both, so the figures are per assignment.
2. A tight loop (100 iterations, two assignments each) when nothing is recorded: capture
   switched off (``probe.on = False``), sampled out (parent not sampled), and no SDK installed,
   against the plain function. Also the loop while recording, per iteration. Then a 3-iteration
   loop, where the per-call cost of deciding not to record shows: switched off, sampled out
   (with the recording SDK installed, so the parent's flag is what says no), sampled out by the
   function's call sampler (a function a wildcard pattern matched), and no SDK installed.
3. The same 20 assignments under ``sys.settrace`` tracers capturing locals (PySnooper, hunter's
   VarsSnooper, snoop), output sent to a null sink.
4. Import-time rewrite cost per 1,000 source lines (every function of ``argparse`` at level
   ``locals``), cold and from the cache, against a plain ``compile()``.
5. One on-demand recompilation.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import textwrap
import timeit
import types
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider, sampling
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from otel_scope import semconv as sc
from otel_scope._sdk import set_global_provider
from otel_scope.capture import sampling as sampling_gate
from otel_scope.compile_time import ImportHook, configure, probes, recompile, rewrite_source
from otel_scope.compile_time.recompile import prepare
from otel_scope.config.settings import Settings
from otel_scope.targets.plan import CapturePlan

ASSIGNMENTS = 20
STRAIGHT = (
    "def straight(a):\n" + "".join(f"    v{i} = a + {i}\n" for i in range(ASSIGNMENTS)) + "    return v0\n"
)
LOOP = textwrap.dedent(
    """\
    def loop(n):
        total = 0
        for i in range(n):
            square = i * i
            total += square
        return total
    """
)
HAND_EVENT = (
    "    span.add_event('otel_scope.locals', {{**common, 'code.line.number': {line}, 'otel_scope.hit': 1,"
    " 'otel_scope.var.v{i}': serializer(v{i}), 'otel_scope.var.v{i}.type': serializer.type_name(v{i})}})\n"
)
HAND = (
    "def hand(a, span, common, serializer):\n"
    + "".join(f"    v{i} = a + {i}\n" + HAND_EVENT.format(i=i, line=i + 2) for i in range(ASSIGNMENTS))
    + "    return v0\n"
)
MINIMAL_EVENT = (
    "    span.add_event('v{i}', {{'otel_scope.var.v{i}': repr(v{i}), 'code.line.number': {line}}})\n"
)
HAND_MINIMAL = (
    "def hand_minimal(a, span):\n"
    + "".join(f"    v{i} = a + {i}\n" + MINIMAL_EVENT.format(i=i, line=i + 2) for i in range(ASSIGNMENTS))
    + "    return v0\n"
)


_SOURCES = Path(tempfile.mkdtemp(prefix="otel-scope-bench-"))


def _module(source: str, name: str, rewritten: bool, level: str = "locals") -> types.ModuleType:
    """``source`` as module ``name``, from a real file (the settrace tracers read source lines)."""
    path = _SOURCES / f"{name}.py"
    path.write_text(source)
    module = types.ModuleType(name)
    module.__file__ = str(path)
    if rewritten:
        code = rewrite_source(source, str(path), name, {"*": CapturePlan(level=level)}).code
    else:
        code = compile(source, str(path), "exec", dont_inherit=True)
    exec(code, module.__dict__)
    return module


def best(stmt, number: int, repeat: int) -> float:
    """Best time of one execution of ``stmt``, in microseconds."""
    return min(timeit.repeat(stmt, number=number, repeat=repeat)) / number * 1e6


def set_provider(provider) -> None:
    set_global_provider(provider)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (noisier)")
    options = parser.parse_args()
    repeat = 3 if options.quick else 7
    scale = 0.2 if options.quick else 1.0
    rows: list[tuple[str, float, str]] = []
    configure(Settings())

    # --- 1. recording: per captured assignment vs hand-written add_event ------------------------
    recording = TracerProvider()  # records spans; no processor, so nothing is exported
    set_provider(recording)
    tracer = recording.get_tracer("bench")
    plain = _module(STRAIGHT, "bench_plain", False)
    ours = _module(STRAIGHT, "bench_ours", True)
    ours_boundary = _module(STRAIGHT, "bench_boundary", True, level="boundaries")
    hand = _module(HAND, "bench_hand", False)
    minimal = _module(HAND_MINIMAL, "bench_minimal", False)
    from otel_scope.capture import Serializer

    serializer = Serializer()

    def with_span(body):
        def run():
            with tracer.start_as_current_span("straight") as span:
                context = span.get_span_context()
                common = {
                    sc.MECHANISM: sc.MECHANISM_COMPILE_TIME,
                    sc.SESSION_ID: f"{context.trace_id:032x}",
                }
                body(span, common)

        return run

    n = int(2000 * scale)
    t_plain = best(lambda: plain.straight(1), n * 10, repeat)
    t_span = best(with_span(lambda span, common: plain.straight(1)), n, repeat)
    t_hand = best(with_span(lambda span, common: hand.hand(1, span, common, serializer)), n, repeat)
    t_minimal = best(with_span(lambda span, common: minimal.hand_minimal(1, span)), n, repeat)
    t_ours = best(lambda: ours.straight(1), n, repeat)
    t_boundary = best(lambda: ours_boundary.straight(1), n, repeat)
    attributes = dict(probes("bench_boundary")[0].attributes)

    def span_like_ours():
        with tracer.start_as_current_span("bench.straight", attributes=attributes) as span:
            span.set_attributes(
                {"otel_scope.arg.a": "1", "otel_scope.return": "1", "otel_scope.return.type": "int"}
            )
            plain.straight(1)

    t_span_like = best(span_like_ours, n, repeat)
    per_ours = (t_ours - t_boundary) / ASSIGNMENTS  # the captures alone: our span's cost is row 3
    per_ours_all = (t_ours - t_span) / ASSIGNMENTS
    per_hand = (t_hand - t_span) / ASSIGNMENTS
    per_minimal = (t_minimal - t_span) / ASSIGNMENTS
    rows += [
        ("plain function, 20 assignments (per call)", t_plain, ""),
        ("  same inside a span (per call)", t_span, ""),
        ("  rewritten, level boundaries: our span, args, return (per call)", t_boundary, ""),
        (
            "  hand-written span with the same attributes (per call)",
            t_span_like,
            f"{t_boundary / t_span_like:.2f}x",
        ),
        (
            "recording: per captured assignment (otel-scope)",
            per_ours,
            f"{per_ours / per_hand:.2f}x hand-written",
        ),
        (
            "  the same, our span's own cost spread over the 20",
            per_ours_all,
            f"{per_ours_all / per_hand:.2f}x",
        ),
        ("  hand-written add_event, same attributes", per_hand, "1.00x"),
        ("  hand-written add_event, 2 attributes", per_minimal, f"{per_minimal / per_hand:.2f}x"),
    ]

    # --- 2. tight loop when nothing is recorded ---------------------------------------------------
    loop_plain = _module(LOOP, "loop_plain", False)
    loop_ours = _module(LOOP, "loop_ours", True)
    iterations = 100
    calls = int(20000 * scale)
    t_loop_plain = best(lambda: loop_plain.loop(iterations), calls, repeat)
    for probe in probes("loop_ours"):
        probe.on = False
    t_off = best(lambda: loop_ours.loop(iterations), calls, repeat)
    for probe in probes("loop_ours"):
        probe.on = True
    unsampled = trace.set_span_in_context(NonRecordingSpan(SpanContext(1, 1, False, TraceFlags(0))))
    from opentelemetry import context as otel_context

    token = otel_context.attach(unsampled)
    t_sampled_out = best(lambda: loop_ours.loop(iterations), calls, repeat)
    otel_context.detach(token)
    set_provider(TracerProvider(sampler=sampling.ALWAYS_OFF))
    t_always_off = best(lambda: loop_ours.loop(iterations), calls, repeat)
    set_provider(None)
    t_no_sdk = best(lambda: loop_ours.loop(iterations), calls, repeat)
    t_small_no_sdk = best(lambda: loop_ours.loop(3), calls * 5, repeat)
    set_provider(recording)
    t_small_plain = best(lambda: loop_plain.loop(3), calls * 5, repeat)
    for probe in probes("loop_ours"):
        probe.on = False
    t_small_off = best(lambda: loop_ours.loop(3), calls * 5, repeat)
    for probe in probes("loop_ours"):
        probe.on = True
    # A function a wildcard pattern matched has a call sampler: past its first calls, most are
    # left out by the sampler before the parent is even looked at.
    loop_sampled = _module(LOOP, "loop_sampled", True)
    for probe in probes("loop_sampled"):
        probe.sampler = sampling_gate.sampler_for(probe.name, named_exactly=False)
    token = otel_context.attach(unsampled)
    t_small_sampled = best(lambda: loop_ours.loop(3), calls * 5, repeat)
    t_small_gated = best(lambda: loop_sampled.loop(3), calls * 5, repeat)
    otel_context.detach(token)
    t_loop_recording = best(lambda: loop_ours.loop(iterations), calls // 20, repeat)
    rows += [
        (f"tight loop ({iterations} iterations), plain (per call)", t_loop_plain, "1.00x"),
        ("  capture switched off", t_off, f"{t_off / t_loop_plain:.2f}x plain"),
        (
            "  sampled out (parent span not sampled)",
            t_sampled_out,
            f"{t_sampled_out / t_loop_plain:.2f}x plain",
        ),
        ("  sampled out (ALWAYS_OFF sampler)", t_always_off, f"{t_always_off / t_loop_plain:.2f}x plain"),
        ("  no SDK installed", t_no_sdk, f"{t_no_sdk / t_loop_plain:.2f}x plain"),
        ("  recording (per iteration, 2 captures, sampled)", t_loop_recording / iterations, ""),
        ("tiny loop (3 iterations), plain (per call)", t_small_plain, "1.00x"),
        ("  capture switched off", t_small_off, f"{t_small_off / t_small_plain:.2f}x plain"),
        (
            "  sampled out (parent span not sampled)",
            t_small_sampled,
            f"{t_small_sampled / t_small_plain:.2f}x plain",
        ),
        (
            "  sampled out by its call sampler (parent not sampled)",
            t_small_gated,
            f"{t_small_gated / t_small_plain:.2f}x plain",
        ),
        ("  no SDK installed", t_small_no_sdk, f"{t_small_no_sdk / t_small_plain:.2f}x plain"),
    ]

    # --- 3. settrace tracers capturing the same locals --------------------------------------------
    import hunter
    import pysnooper
    import snoop

    sink = io.StringIO()
    snooped = pysnooper.snoop(output=lambda text: None, color=False)(plain.straight)
    t_pysnooper = best(lambda: snooped(1), max(50, n // 20), repeat)
    snooped2 = snoop.Config(out=io.StringIO(), color=False).snoop(plain.straight)
    t_snoop = best(lambda: snooped2(1), max(50, n // 20), repeat)

    def hunted():
        sink.seek(0)
        sink.truncate()
        with hunter.trace(function="straight", action=hunter.VarsSnooper(stream=sink)):
            plain.straight(1)

    t_hunter = best(hunted, max(50, n // 20), repeat)
    for name, t in (("PySnooper", t_pysnooper), ("hunter VarsSnooper", t_hunter), ("snoop", t_snoop)):
        per = (t - t_plain) / ASSIGNMENTS
        rows.append((f"settrace: {name}, per captured assignment", per, f"{per / per_ours:.0f}x otel-scope"))
    # In a loop otel-scope keeps the first and last loop_sample hits of each point; the tracers
    # still format every one. Per captured assignment, 1,000 iterations x 2 assignments:
    looped = 1000
    t_big_plain = best(lambda: loop_plain.loop(looped), 20, repeat)
    t_big_ours = best(lambda: loop_ours.loop(looped), 20, repeat)
    per_loop_ours = (t_big_ours - t_big_plain) / (2 * looped)
    rows.append(("loop of 1,000: otel-scope per captured assignment", per_loop_ours, ""))
    snooped_loop = pysnooper.snoop(output=lambda text: None, color=False)(loop_plain.loop)
    t_big_snooper = best(lambda: snooped_loop(looped), 3, repeat)
    per_loop_snooper = (t_big_snooper - t_big_plain) / (2 * looped)
    rows.append(
        (
            "  PySnooper per captured assignment",
            per_loop_snooper,
            f"{per_loop_snooper / per_loop_ours:.0f}x otel-scope",
        )
    )

    # --- 4. import-time rewrite cost --------------------------------------------------------------
    import argparse as sample_module

    path = Path(sample_module.__file__)
    source = path.read_text()
    lines = source.count("\n")
    plans = {"*": CapturePlan()}
    rounds = 1 if options.quick else 3
    t_cold = best(lambda: rewrite_source(source, str(path), "argparse", plans), rounds, repeat=2) / 1000
    t_compile = best(lambda: compile(source, str(path), "exec"), 5, repeat) / 1000
    with tempfile.TemporaryDirectory() as cache:
        hook = ImportHook(lambda name: plans, cache_dir=cache)
        loader = type(
            "L",
            (),
            {"get_filename": lambda self, n: str(path), "get_data": lambda self, p: path.read_bytes()},
        )()
        hook.code_for("argparse", loader, plans)  # fill the cache
        t_cached = best(lambda: hook.code_for("argparse", loader, plans), 20, repeat) / 1000
    per_k = 1000 / lines
    rows += [
        (f"rewrite cold, per 1,000 lines (ms; argparse, {lines} lines)", t_cold * per_k, ""),
        ("rewrite from cache, per 1,000 lines (ms)", t_cached * per_k, ""),
        ("plain compile(), per 1,000 lines (ms)", t_compile * per_k, ""),
    ]

    # --- 5. one recompilation ---------------------------------------------------------------------
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "bench_target.py"
        file.write_text(source)
        module = types.ModuleType("bench_target")
        module.__file__ = str(file)
        sys.modules["bench_target"] = module
        exec(compile(source, str(file), "exec", dont_inherit=True), module.__dict__)
        timings = []
        for _ in range(3 if options.quick else 5):
            done = recompile(module.ArgumentParser.parse_known_args, CapturePlan())
            timings.append(done.seconds)
            done.restore()
        methods = [f for c in vars(module).values() if isinstance(c, type) for f in vars(c).values()]
        methods = [f for f in methods if isinstance(f, types.FunctionType) and f.__module__ == "bench_target"]
        batch = best(lambda: prepare([(f, CapturePlan()) for f in methods]), 1, 2 if options.quick else 3)
        del sys.modules["bench_target"]
    rows.append((f"one recompilation (ms; a method of a {lines}-line module)", min(timings) * 1000, ""))
    rows.append((f"recompiling its {len(methods)} methods in one batch (ms)", batch / 1000, ""))

    print(f"Python {sys.version.split()[0]} on {os.uname().machine}; µs unless marked ms")
    width = max(len(r[0]) for r in rows)
    for label, value, note in rows:
        print(f"{label:<{width}}  {value:10.3f}  {note}")


if __name__ == "__main__":
    main()
