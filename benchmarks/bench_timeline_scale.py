"""The terminal timeline at real-world scale: history, --function, --where, export and import on
stores of 10k, 100k and 1M spans, with wall time and peak RSS of each command.

    .venv/bin/python benchmarks/bench_timeline_scale.py [--sizes 10000,100000,1000000] [--keep DIR]

Each size gets its own store, generated in the shape of a server program's trace: one session,
requests (``SERVER`` spans) each running ``orderflow.process`` (whose ``self`` is a 500-character
repr, as in the issue's Environment example) that calls ``orderflow.check_stock`` 48 times; every
check has a compile-time ``remaining`` local, one in 400 raises, and a few spans have a parent
that is not in the trace. Every figure is one run of the real ``otel-scope`` console script in a
subprocess (stdout to /dev/null, or read line by line for the first screen), measured with
``os.wait4`` so peak RSS is the command's own.

- ``history first screen``: time until the 60th line reaches the pipe (then the command is stopped).
- ``history full``: the whole output (summary and folded timeline), and ``--full`` unfolded.
- ``--function``, ``--where``: the filtered listings; ``--follow``: one request's call by its span ID.
- ``export`` both formats to a file, then ``import`` of the OTLP file into a fresh store.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from otel_scope import semconv as sc
from otel_scope.store.records import EventRecord, SpanRecord

OTEL_SCOPE = Path(sys.executable).with_name("otel-scope")
TRACE_ID = "4a50b6" + "0" * 25 + "1"
CHECKS_PER_REQUEST = 48
FIRST_SCREEN_LINES = 60
_ENVIRONMENT = "Environment(" + ", ".join(f"option_{i}={i * 7}" for i in range(40)) + ")"
_RESOURCE = {"service.name": "orderflow", "host.name": "bench"}


def _span(span_id: int, parent: int | None, name: str, start: int, end: int, **kw: object) -> SpanRecord:
    return SpanRecord(
        trace_id=TRACE_ID,
        span_id=f"{span_id:016x}",
        parent_span_id=f"{parent:016x}" if parent is not None else None,
        name=name,
        start_ns=start,
        end_ns=end,
        resource=_RESOURCE,
        **kw,  # type: ignore[arg-type]
    )


def generate(path: Path, spans: int) -> None:
    """A store at ``path`` holding one trace of about ``spans`` spans."""
    from otel_scope.store import SpanStore  # only in the generating process (see run)

    store = SpanStore(path)
    base = 1_700_000_000_000_000_000
    runtime = {sc.MECHANISM: sc.MECHANISM_RUNTIME, sc.SESSION_ID: TRACE_ID}
    per_request = CHECKS_PER_REQUEST + 2
    requests = max(1, (spans - 1) // per_request)
    span_id = 1
    batch: list[SpanRecord] = []
    session_end = base + requests * 100_000 + 10
    batch.append(
        _span(span_id, None, sc.SESSION_SPAN_NAME, base, session_end,
              attributes={**runtime, sc.SESSION_NAME: "bench", sc.SESSION_KIND: "process"})
    )  # fmt: skip
    for r in range(requests):
        t = base + r * 100_000 + 5
        server_id, process_id = span_id + 1, span_id + 2
        span_id += 2
        # One request in 1,000 lost its server span (a dropped export): its call is an orphan.
        if r % 1000 != 999:
            batch.append(_span(server_id, 1, "GET /orders", t, t + 90_000, kind="SERVER"))
        batch.append(
            _span(process_id, server_id, "orderflow.process", t + 10, t + 89_000,
                  attributes={**runtime, sc.CODE_FUNCTION_NAME: "orderflow.process",
                              sc.ARG_PREFIX + "self": _ENVIRONMENT, sc.ARG_PREFIX + "order": f"{{'id': {r}}}",
                              sc.RETURN_VALUE: "'accepted'"})
        )  # fmt: skip
        for c in range(CHECKS_PER_REQUEST):
            span_id += 1
            start = t + 100 + c * 1_500
            remaining = (r * CHECKS_PER_REQUEST + c) % 400 - 1
            failed = remaining < 0
            attributes = {**runtime, sc.CODE_FUNCTION_NAME: "orderflow.check_stock",
                          sc.ARG_PREFIX + "item": f"'item{c}'"}  # fmt: skip
            events = [
                EventRecord(sc.EVENT_LOCALS, start + 300, {sc.MECHANISM: sc.MECHANISM_COMPILE_TIME,
                            sc.CODE_LINE_NUMBER: 17, sc.VAR_PREFIX + "remaining": str(remaining)})
            ]  # fmt: skip
            if failed:
                events.append(EventRecord("exception", start + 900, {sc.EXCEPTION_TYPE: "ValueError",
                                          sc.EXCEPTION_MESSAGE: "out of stock"}))  # fmt: skip
            else:
                attributes[sc.RETURN_VALUE] = str(remaining)
            batch.append(
                _span(span_id, process_id, "orderflow.check_stock", start, start + 1_000,
                      attributes=attributes, events=events, status_code="ERROR" if failed else "UNSET")
            )  # fmt: skip
        if len(batch) >= 20_000:
            store.add_records(batch)
            batch.clear()
    store.add_records(batch)
    store.close()


def _measure(
    args: list[str], env: dict[str, str], first_lines: int | None = None
) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak RSS (MB) of one ``otel-scope`` run; with ``first_lines``,
    the wall time until that many lines arrived (the process is then stopped)."""
    started = time.perf_counter()
    if first_lines is None:
        process = subprocess.Popen([str(OTEL_SCOPE), *args], stdout=subprocess.DEVNULL, env=env)
    else:
        process = subprocess.Popen([str(OTEL_SCOPE), *args], stdout=subprocess.PIPE, env=env)
        assert process.stdout is not None
        for _ in range(first_lines):
            if not process.stdout.readline():
                break
        elapsed = time.perf_counter() - started
        process.kill()
        process.stdout.close()
    _, status, usage = os.wait4(process.pid, 0)
    if first_lines is None:
        elapsed = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"otel-scope {' '.join(args)} failed with status {status}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def run(sizes: list[int], directory: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_SCOPE_")}
    startup = _measure(["--version"], env)
    print(f"{'':>9}  {'otel-scope --version (start-up alone)':<44}  {startup[0]:>8.2f}  {startup[1]:>6.2f}  "
          f"{startup[2]:>11.0f}")  # fmt: skip
    print(f"{'spans':>9}  {'command':<44}  {'seconds':>8}  {'CPU s':>6}  {'peak RSS MB':>11}")
    for size in sizes:
        store = directory / f"store-{size}.sqlite3"
        if not store.exists():
            # In a child process: a child's peak RSS on Linux starts at its parent's RSS at fork
            # time, so this process stays small for the figures of the commands it runs.
            started = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--generate", str(size), str(store)], check=True)
            took = time.perf_counter() - started
            print(f"{size:>9,}  generate ({store.stat().st_size / 2**20:.0f} MB store, {took:.0f} s)")
        exported = directory / f"export-{size}.otlp.json"
        imported = directory / f"import-{size}.sqlite3"
        imported.unlink(missing_ok=True)
        common = ["--store", str(store)]
        cases: list[tuple[str, list[str], int | None]] = [
            ("history (first screen)", ["history", *common], FIRST_SCREEN_LINES),
            ("history (full, folded)", ["history", *common], None),
            ("history --full (every line)", ["history", "--full", *common], None),
            ("history --function check_stock", ["history", "--function", "check_stock", *common], None),
            ("history --where 'remaining < 0'", ["history", "--where", "remaining < 0", *common], None),
            # The first request's orderflow.process call (span 3) and its 48 checks.
            ("history --follow #<span id>", ["history", "--follow", f"#{3:016x}", *common], None),
            ("export --format otlp-json", ["export", TRACE_ID, "-o", str(exported), *common], None),
            ("export --format jaeger-json", ["export", TRACE_ID, "--format", "jaeger-json", "-o",
                                             str(directory / f"export-{size}.jaeger.json"), *common], None),
            ("import (otlp-json, into a new store)",
             ["import", str(exported), "--store", str(imported)], None),
        ]  # fmt: skip
        for label, args, first in cases:
            seconds, cpu, rss = _measure(args, env, first)
            print(f"{size:>9,}  {label:<44}  {seconds:>8.2f}  {cpu:>6.2f}  {rss:>11.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated span counts")
    parser.add_argument("--keep", type=Path, help="keep the generated stores here (reused next time)")
    parser.add_argument("--generate", nargs=2, metavar=("SPANS", "PATH"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.generate:
        generate(Path(options.generate[1]), int(options.generate[0]))
        return
    sizes = [int(s) for s in options.sizes.split(",")]
    if options.keep:
        options.keep.mkdir(parents=True, exist_ok=True)
        run(sizes, options.keep)
        return
    with tempfile.TemporaryDirectory(prefix="otel-scope-bench-") as directory:
        run(sizes, Path(directory))


if __name__ == "__main__":
    main()
