"""Package-wide capture on real third-party workloads: every variant side by side, in one run.

    .venv/bin/python benchmarks/bench_package_wide.py [--size S] [--workloads a,b] [--variants a,b]
                                                      [--timeout SECONDS] [--repeat N]
                                                      [--json FILE]

Each workload is real code from PyPI doing real work, targeted as a whole package (``pkg.*``):

* ``pygments``: highlighting ``12*S`` standard-library source files to HTML (``pygments.*``).
* ``markdown``: rendering ``12*S`` Markdown documents, installed packages' descriptions (``markdown.*``).
* ``jinja2``: compiling an environment of templates (inheritance, macros, filters, loops) and
  rendering ``200*S`` pages (``jinja2.*``).
* ``suite:toolz``, ``suite:more_itertools``, ``suite:six``: the library's own test suite, from
  its pinned sdist (fetched and unpacked by ``tests/thirdparty_suites.py``), run by
  ``pytest -q -p no:cacheprovider`` in the unpacked tree; the targets are the library only
  (``toolz.*``, ``more_itertools.*``, ``six.*``, which is the module ``six``): the test modules
  belong to pytest's assertion rewriting. ``--size`` does not apply. Every run compiles from
  cold, as a first run does: no ``__pycache__`` is written and the rewrite cache starts empty.
  The pass/fail/skip counts of each variant must equal plain's: a variant that changes the
  suite's outcome is shown as ``BROKEN``, not as a ratio. ``otel`` is not run on suites: a
  decorator set on module attributes from outside misses the names a package re-exports and
  the references its tests bound, so it would not time the same calls.

and runs in a fresh process per variant (so no instrumentation leaks from one to the next):

* ``plain``: the workload under ``python``, no tracing at all: the 1.0x every ratio divides by.
* ``otel``: the plain OTel way, a hand-written decorator (``tracer.start_as_current_span`` with
  the same ``code.*`` attributes) on every function of the package, under
  ``opentelemetry-instrument`` with the same exporter as otel-scope (the local store).
* ``runtime``: ``opentelemetry-instrument --scope-mode runtime --scope-targets 'pkg.*'``.
* ``compile_time``: ``--scope-mode compile_time --scope-locals 'pkg.*'`` (level ``locals``).
* ``hybrid``: ``--scope-mode hybrid --scope-targets 'pkg.*' --scope-locals 'pkg.*'``.
* ``hunter``: ``hunter.trace(module_startswith=pkg, actions=[VarsSnooper])`` to ``/dev/null``,
  the anchor a user would pick for locals.
* ``viztracer``: ``VizTracer(log_func_args=True, include_files=[the package])``, collection only
  (the ``.json`` save is not timed).

hunter and VizTracer start in the worker process, before the workload (for a suite: before
``pytest.main``, so they see the library imported by the tests, as otel-scope does).

Two ratios per cell against ``plain``: ``work`` is the workload's own time measured inside the
process (after imports and instrumentation start-up; for a suite the time around
``pytest.main``, which includes importing the library), ``wall`` is the whole process including
start-up and the final export at exit. For otel-scope variants the store is read afterwards to
report spans and the calls sampling left out (the session root span's
``otel_scope.sampling.*`` attributes, with the functions that lost the most calls). A variant
still running after ``--timeout`` seconds is killed and shown as ``>N``. ``--repeat N`` runs N
rounds over all variants and shows each variant's fastest round (on a shared machine the least
disturbed one); a round that fails (error, timeout, BROKEN) is shown instead.
The start-up of ``opentelemetry-instrument`` itself, against the stock CLI without otel-scope,
is measured by ``bench_startup.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
BIN = Path(sys.executable).parent

# Each workload and the package it targets (``pkg.*``).
WORKLOADS = {"pygments": "pygments", "markdown": "markdown", "jinja2": "jinja2"}
# The real test suites: workload -> tests/thirdparty_suites.py library (pinned sdist).
SUITES = {"suite:toolz": "toolz", "suite:more_itertools": "more-itertools", "suite:six": "six"}
WORKLOADS.update({"suite:toolz": "toolz", "suite:more_itertools": "more_itertools", "suite:six": "six"})
SUITE_VARIANTS = ("plain", "runtime", "compile_time", "hybrid", "hunter", "viztracer")
TOP_SHOWN = 5  # functions listed per variant with the most calls sampling left out
VARIANTS = ("plain", "otel", "runtime", "compile_time", "hybrid", "hunter", "viztracer")
SCOPE_FLAGS = {
    "runtime": lambda pkg: ["--scope-mode", "runtime", "--scope-targets", f"{pkg}.*"],
    "compile_time": lambda pkg: ["--scope-mode", "compile_time", "--scope-locals", f"{pkg}.*"],
    "hybrid": lambda pkg: [
        *("--scope-mode", "hybrid", "--scope-targets", f"{pkg}.*", "--scope-locals", f"{pkg}.*")
    ],
    "otel": lambda pkg: ["--scope-mode", "off"],
}

# --- the workloads (run inside the worker process) -------------------------------------------


def _pygments_prepare(size: int):
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.glob("*.py") if p.stat().st_size < 60_000)[: 12 * size]
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in files]

    def run() -> int:
        return sum(len(highlight(t, PythonLexer(), HtmlFormatter())) for t in texts)

    return run


def _markdown_prepare(size: int):
    from importlib.metadata import distributions

    import markdown

    # Real Markdown that does not change with this repository: installed packages' descriptions.
    texts = sorted(
        d.metadata.get_payload()
        for d in distributions()
        if "markdown" in (d.metadata.get("Description-Content-Type") or "") and d.metadata.get_payload()
    )
    texts = (texts * (12 * size // len(texts) + 1))[: 12 * size]

    def run() -> int:
        md = markdown.Markdown(extensions=["tables", "fenced_code", "toc"])
        total = 0
        for t in texts:
            total += len(md.reset().convert(t))
        return total

    return run


_JINJA_TEMPLATES = {
    "base.html": (
        "<html><head><title>{% block title %}{% endblock %}</title></head><body>"
        "{% block body %}{% endblock %}</body></html>"
    ),
    "macros.html": (
        "{% macro row(item, loop) -%}<tr class='{{ loop.cycle('odd', 'even') }}'>"
        "<td>{{ item.name|title }}</td><td>{{ '%.2f'|format(item.price) }}</td>"
        "<td>{{ item.tags|join(', ')|e }}</td></tr>{%- endmacro %}"
    ),
    "page.html": (
        "{% extends 'base.html' %}{% from 'macros.html' import row %}"
        "{% block title %}{{ title|upper }}{% endblock %}{% block body %}"
        "<h1>{{ title }}</h1>{% if items %}<table>{% for item in items|sort(attribute='price') %}"
        "{{ row(item, loop) }}{% endfor %}</table>{% else %}<p>none</p>{% endif %}"
        "<p>{{ items|length }} items, total {{ items|sum(attribute='price')|round(2) }}</p>"
        "{% endblock %}"
    ),
}


def _jinja2_prepare(size: int):
    import jinja2

    pages = [
        {
            "title": f"page {n}",
            "items": [
                {"name": f"item {n}-{i}", "price": (n * 7 + i * 3) % 50 + 0.5, "tags": ["a", f"t{i}"]}
                for i in range(12)
            ],
        }
        for n in range(200 * size)
    ]

    def run() -> int:
        env = jinja2.Environment(loader=jinja2.DictLoader(_JINJA_TEMPLATES), autoescape=True)
        page = env.get_template("page.html")
        return sum(len(page.render(**p)) for p in pages)

    return run


def _thirdparty():
    """tests/thirdparty_suites.py, which pins, fetches and unpacks the suites (imported, not
    copied; appended to the path so that nothing in tests/ shadows what a suite imports)."""
    if str(ROOT / "tests") not in sys.path:
        sys.path.append(str(ROOT / "tests"))
    import thirdparty_suites

    return thirdparty_suites


def _suite_prepare(workload: str):
    """The suite of ``workload`` under pytest, in the unpacked sdist (this process's cwd)."""
    import pytest

    tests = _thirdparty().LIBRARIES[SUITES[workload]].tests

    def run() -> int:
        return int(pytest.main(["-q", "-p", "no:cacheprovider", tests]))

    return run


_PREPARE = {"pygments": _pygments_prepare, "markdown": _markdown_prepare, "jinja2": _jinja2_prepare}


def _wrap_package_with_plain_otel(pkg: str) -> int:
    """The plain-OTel baseline: a hand-written span decorator on every function of ``pkg``."""
    import functools
    import inspect

    from opentelemetry import trace

    tracer = trace.get_tracer("handwritten")

    def decorate(func, name: str):
        code = func.__code__
        attrs = {"code.function.name": name, "code.file.path": code.co_filename}
        attrs["code.line.number"] = code.co_firstlineno

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with tracer.start_as_current_span(name, attributes=attrs):
                return func(*args, **kwargs)

        return wrapper

    count = 0
    for modname, module in list(sys.modules.items()):
        if not (modname == pkg or modname.startswith(pkg + ".")):
            continue
        for attr, value in list(vars(module).items()):
            if inspect.isfunction(value) and value.__module__ == modname:
                setattr(module, attr, decorate(value, f"{modname}.{value.__qualname__}"))
                count += 1
            elif inspect.isclass(value) and value.__module__ == modname:
                for mname, member in list(vars(value).items()):
                    if inspect.isfunction(member) and not mname.startswith("__"):
                        setattr(value, mname, decorate(member, f"{modname}.{member.__qualname__}"))
                        count += 1
    return count


def worker(workload: str, variant: str, size: int) -> None:
    """Run one workload under one variant in this process; print its timing as JSON."""
    pkg = WORKLOADS[workload]
    run = _suite_prepare(workload) if workload in SUITES else _PREPARE[workload](size)
    if variant == "otel":
        _wrap_package_with_plain_otel(pkg)
    tracer_obj = None
    if variant == "hunter":
        import hunter

        devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
        hunter.trace(hunter.Q(module_startswith=pkg, actions=[hunter.VarsSnooper(stream=devnull)]))
    elif variant == "viztracer":
        from viztracer import VizTracer

        # Located, not imported: a suite's tests import the library under the tracer.
        origin = importlib.util.find_spec(pkg).origin
        include = [origin]
        if origin.endswith("__init__.py"):  # a package: all of it but the tests toolz ships inside
            root = os.path.dirname(origin)
            include = [os.path.join(root, name) for name in sorted(os.listdir(root)) if name != "tests"]
        tracer_obj = VizTracer(log_func_args=True, include_files=include, tracer_entries=2_000_000, verbose=0)
        tracer_obj.start()
    started = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - started
    if tracer_obj is not None:
        tracer_obj.stop()
    if variant == "hunter":
        import hunter

        hunter.stop()
    print(json.dumps({"seconds": seconds, "result": result}))


# --- the driver -------------------------------------------------------------------------------


def _env(store: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PYTHON", "PYTEST_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["OTEL_SCOPE_STORE_PATH"] = str(store)
    env["OTEL_SCOPE_CONTROL"] = "false"
    env["OTEL_TRACES_EXPORTER"] = "otel_scope"  # the local store only: no collector lookup
    env["OTEL_METRICS_EXPORTER"] = env["OTEL_LOGS_EXPORTER"] = "none"
    return env


def _store_figures(store: Path) -> dict[str, object]:
    """Spans stored, and the sampling counts the session root span carries (``top``: the
    functions with the most calls left out, ``name=count``)."""
    if not store.exists():
        return {}
    with sqlite3.connect(store) as db:
        spans = db.execute("SELECT count(*) FROM spans").fetchone()[0]
        row = db.execute("SELECT attributes FROM spans WHERE name = 'otel_scope.session'").fetchone()
    figures: dict[str, object] = {"spans": spans}
    if row:
        for key, value in json.loads(row[0]).items():
            if key.startswith("otel_scope.sampling.") and isinstance(value, (int, list)):
                figures[key.removeprefix("otel_scope.sampling.")] = value
    return figures


def measure(workload: str, variant: str, size: int, timeout: float, tmp: Path) -> dict:
    """One fresh process of ``workload`` under ``variant``; a suite runs in its unpacked sdist
    (``tmp/<sdist>``, see :func:`unpack_suites`) and reports pytest's counts as ``counts``."""
    store = tmp / f"{workload}-{variant}.sqlite3".replace(":", "-")
    # A store of this run only (--repeat runs a variant again). Its WAL files go too: a run that
    # exits mid-write leaves them, and SQLite would replay them into the next run's new file.
    for path in (store, store.with_name(store.name + "-wal"), store.with_name(store.name + "-shm")):
        path.unlink(missing_ok=True)
    cmd = [sys.executable, str(HERE), "--worker", workload, variant, str(size)]
    if variant in SCOPE_FLAGS:
        cmd = [str(BIN / "opentelemetry-instrument"), *SCOPE_FLAGS[variant](WORKLOADS[workload]), *cmd]
    env, cwd = _env(store), tmp
    if workload in SUITES:
        cwd = tmp / _thirdparty().LIBRARIES[SUITES[workload]].sdist
        env["PYTHONPATH"] = str(cwd)  # the library from its sdist, as its suite expects
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # every run compiles from cold, plain included
        env["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="cache-", dir=tmp)  # an empty rewrite cache
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        return {"timeout": True, "wall": timeout}
    wall = time.perf_counter() - started
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}", "wall": wall}
    out = json.loads(lines[-1])
    row = {"work": out["seconds"], "wall": wall, "result": out["result"], **_store_figures(store)}
    if workload in SUITES:
        row["counts"] = _thirdparty().summary_counts(proc.stdout)
        if not row["counts"]:
            tail = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
            return {"error": f"no pytest summary: {tail}", "wall": wall}
    return row


def unpack_suites(workloads: list[str], tmp: Path) -> None:
    """Unpack the sdist of every suite workload into ``tmp`` (downloaded once, then cached)."""
    thirdparty = _thirdparty()
    for workload in workloads:
        if workload in SUITES:
            thirdparty.unpack(thirdparty.LIBRARIES[SUITES[workload]], tmp)


def _failed(row: dict) -> bool:
    return "work" not in row or bool(row.get("broken"))


def _keep(kept: dict | None, new: dict) -> dict:
    """What a variant shows after one more round: a failure in any round (broken, error,
    timeout), else its fastest round, the one the machine's other load disturbed least."""
    if kept is None or _failed(new):
        return new
    if _failed(kept):
        return kept
    return new if new["work"] < kept["work"] else kept


def _cell(row: dict, base: dict, key: str) -> str:
    if row.get("skipped"):
        return "-"
    if row.get("broken"):
        return "BROKEN"
    if row.get("timeout"):
        return f">{row['wall'] / base['wall']:.0f}x" if key == "wall" else "timeout"
    if "error" in row:
        return "error"
    return f"{row[key] / base[key]:.2f}x"


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=f"suite workloads ({', '.join(SUITES)}) run a library's own pytest suite, with the "
        f"variants {', '.join(SUITE_VARIANTS)}; a variant that changes its pass/fail counts shows BROKEN.",
    )
    parser.add_argument(
        "--size", type=int, default=1, help="workload size multiplier (default 1; not suites)"
    )
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated, of {', '.join(WORKLOADS)} (default: all)",
    )
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)} (default: all)"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per variant run")
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds over all variants; each shows its fastest (default 1)"
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    workloads = [w for w in args.workloads.split(",") if w]
    if unknown := set(workloads) - set(WORKLOADS):
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    variants = ["plain", *(v for v in args.variants.split(",") if v and v != "plain")]
    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="otel-scope-pkgwide-") as tmp:
        unpack_suites(workloads, Path(tmp))
        for workload in workloads:
            rows: dict[str, dict] = {}
            for _ in range(args.repeat):  # whole rounds: a change in the machine's load hits all
                for variant in variants:
                    if workload in SUITES and variant not in SUITE_VARIANTS:
                        rows[variant] = {"skipped": True}
                        continue
                    if variant in rows and _failed(rows[variant]):
                        continue  # a failure stays shown: no need to wait for it again
                    row = measure(workload, variant, args.size, args.timeout, Path(tmp))
                    base = rows.get("plain", {})
                    if "counts" in row and "counts" in base and row["counts"] != base["counts"]:
                        row["broken"] = True  # the variant changed the suite's outcome
                    print(f"  {workload:20} {variant:13} {json.dumps(row)}", file=sys.stderr, flush=True)
                    rows[variant] = _keep(rows.get(variant), row)
            results[workload] = rows
    print(f"\npackage-wide capture, size {args.size}: ratio to plain (work = in-process, wall = process)")
    header = f"{'workload':20} {'plain s':>8} " + " ".join(f"{v + ' work/wall':>24}" for v in variants[1:])
    print(header)
    for workload, rows in results.items():
        base = rows["plain"]
        if "work" not in base:
            print(f"{workload:20} plain run failed: {base}")
            continue
        cells = " ".join(
            f"{_cell(rows[v], base, 'work') + ' / ' + _cell(rows[v], base, 'wall'):>24}" for v in variants[1:]
        )
        print(f"{workload:20} {base['work']:8.3f} {cells}")
    suites = {w: rows for w, rows in results.items() if w in SUITES}
    if suites:
        print("\nsuite outcomes (pytest's counts; each variant must match plain)")
        for workload, rows in suites.items():
            for variant, row in rows.items():
                if not row.get("skipped"):
                    outcome = (
                        row.get("counts") or row.get("error") or ("timeout" if row.get("timeout") else "")
                    )
                    flag = "  BROKEN: differs from plain" if row.get("broken") else ""
                    print(f"  {workload:20} {variant:13} {outcome}{flag}")
    print("\nspans stored and calls left out by sampling (otel-scope variants), and per function")
    shown = ("work", "wall", "result", "timeout", "error", "counts", "broken", "skipped", "top")
    for workload, rows in results.items():
        for variant, row in rows.items():
            counts = {k: v for k, v in row.items() if k not in shown}
            if counts:
                print(f"  {workload:20} {variant:13} " + ", ".join(f"{k} {v}" for k, v in counts.items()))
            if row.get("top"):
                print(f"  {'':20} {'':13} most left out: " + ", ".join(row["top"][:TOP_SHOWN]))
    if args.json:
        figures = {"size": args.size, "results": results}
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
