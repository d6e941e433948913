"""The extra cost of the first failing call of a function under escalation (hybrid mode).

    .venv/bin/python benchmarks/bench_escalation.py [--functions N] [--lines L]

A generated module of ``L`` lines holds ``N`` functions that raise; each is runtime-traced and
called once with escalation on (the call that triggers it) and, in another engine, with
escalation off. The difference is what escalation adds to the failing call. With the recompile
on a worker, also shown: how long after the failure the locals are ready.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from otel_scope.config import Settings, parse_pattern
from otel_scope.engine import Engine
from otel_scope.runtime.escalation import Escalator
from otel_scope.targets.planner import Request


def _module(directory: Path, functions: int, lines: int) -> str:
    body = [
        f"def fail_{i}(n):\n    values = [n, n * 2]\n    return values[0] / (n - n)\n"
        for i in range(functions)
    ]
    filler = [
        f"def filler_{i}(x):\n    y = x + {i}\n    return y\n"
        for i in range(max(0, (lines - 3 * functions) // 3))
    ]
    (directory / "bench_escalated.py").write_text("\n".join(body + filler))
    return "bench_escalated"


def _first_call_s(engine: Engine, module: object, name: str) -> float:
    engine.add(Request(parse_pattern(f"bench_escalated:{name}")))
    fn = getattr(module, name)
    started = time.perf_counter()
    try:
        fn(1)
    except ZeroDivisionError:
        pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=10)
    parser.add_argument("--lines", type=int, default=2600)
    args = parser.parse_args()
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    trace.set_tracer_provider(TracerProvider())
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, tmp)
        module = __import__(_module(Path(tmp), args.functions, args.lines))
        names = [f"fail_{i}" for i in range(args.functions)]
        off = Engine(Settings(mode="hybrid"))
        base = [_first_call_s(off, module, n) for n in names]
        off.remove_all()
        on = Engine(Settings(mode="hybrid"))
        escalator = Escalator(on, on.settings)
        on.add_finish_hook(escalator.on_finish)
        extra, ready = [], []
        for name, plain in zip(names, base, strict=True):
            first = _first_call_s(on, module, name)
            started = time.perf_counter()
            wait = getattr(escalator, "wait_idle", None)  # absent before the worker existed
            if wait is not None:
                wait(60)
            ready.append(first + time.perf_counter() - started)
            extra.append(first - plain)
            escalator.end("bench")
        rows = escalator.rows()
        assert all(r["state"] != "failed" for r in rows), rows
    print(f"{args.functions} functions in a {args.lines}-line module")
    print(f"failing call, escalation off: median {statistics.median(base) * 1e3:.3f} ms")
    print(
        f"extra cost of the first failing call: median {statistics.median(extra) * 1e3:.3f} ms, "
        f"max {max(extra) * 1e3:.3f} ms"
    )
    print(f"locals ready after the failure: median {statistics.median(ready) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
