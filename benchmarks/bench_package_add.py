"""How long a package-wide target takes to apply to an already-imported package (issue 14).

    .venv/bin/python benchmarks/bench_package_add.py [--repeat N]

The goals: ``--scope-locals 'pkg.*'`` on an imported package of about 700 functions is ready in
under 2 s, and adding about 300 runtime targets with about 500 modules loaded takes under
100 ms; neither may stall the program for longer. The package is jinja2 (every one of its
modules imported), with Flask, markdown and pygments imported beside it so that about 500
modules are loaded, as in a web app. Each variant adds ``jinja2.*`` to a fresh engine
(``Engine.add`` of the requests its flags make, what the start-up and ``otel-scope targets add``
run), then removes it,
``--repeat`` times; printed: the first add (the one a process pays: its caches are still cold,
such as the compiled trampoline templates, one per shape of parameters), the fastest and median
add and remove, the functions instrumented,
and, side by side, the plain way to do the same by hand: a ``wrapt`` wrapper with an OTel span
around each of the same functions, at its attribute (which, unlike otel-scope, reaches none of
the references taken before: ``from m import f``, registries, callbacks).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import statistics
import sys
import time
import types
from collections.abc import Callable
from typing import Any

import wrapt
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from otel_scope.config import Settings, parse_patterns
from otel_scope.engine import Engine
from otel_scope.targets.planner import requests_from_settings

PACKAGE = "jinja2"
BESIDE = ("flask", "markdown", "pygments.lexers.python", "pygments.formatters.html", "sqlite3", "email.mime")
BY_HAND = "by hand (wrapt + span)"

# The settings each variant starts with, as its flags would make them.
WILDCARD = parse_patterns(f"{PACKAGE}.*")
VARIANTS: dict[str, Callable[[], Settings]] = {
    "--scope-targets (runtime)": lambda: Settings(mode="runtime", targets=WILDCARD),
    "--scope-locals (compile)": lambda: Settings(mode="compile_time", locals=WILDCARD),
    "hybrid, both": lambda: Settings(mode="hybrid", targets=WILDCARD, locals=WILDCARD),
}


def load_modules() -> list[types.ModuleType]:
    """Every module of the package, and the others beside it; the package's modules."""
    package = importlib.import_module(PACKAGE)
    for info in pkgutil.walk_packages(package.__path__, f"{PACKAGE}."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    for name in BESIDE:
        importlib.import_module(name)
    return [m for n, m in sorted(sys.modules.items()) if n == PACKAGE or n.startswith(f"{PACKAGE}.")]


def package_functions(modules: list[types.ModuleType]) -> list[tuple[Any, str]]:
    """``(owner, attribute)`` of every plain function and method the package defines."""
    found = []
    for module in modules:
        for name, value in list(vars(module).items()):
            if type(value) is types.FunctionType and value.__module__ == module.__name__:
                found.append((module, name))
            elif isinstance(value, type) and value.__module__ == module.__name__:
                found += [(value, k) for k, v in vars(value).items() if type(v) is types.FunctionType]
    return found


def by_hand(functions: list[tuple[Any, str]]) -> tuple[float, float]:
    """Seconds to wrap every function with a span by hand (wrapt), and to unwrap them."""
    tracer = trace.get_tracer("by-hand")

    def traced(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        with tracer.start_as_current_span(wrapped.__qualname__):
            return wrapped(*args, **kwargs)

    started = time.perf_counter()
    originals = []
    for owner, name in functions:
        originals.append(vars(owner)[name])
        wrapt.wrap_function_wrapper(owner, name, traced)
    added = time.perf_counter() - started
    started = time.perf_counter()
    for (owner, name), original in zip(functions, originals, strict=True):
        setattr(owner, name, original)
    return added, time.perf_counter() - started


def through_engine(make: Callable[[], Settings]) -> tuple[float, float, int]:
    """Seconds to add the settings' requests to a fresh engine and to remove them; functions
    instrumented."""
    settings = make()
    engine = Engine(settings)
    started = time.perf_counter()
    handles = [engine.add(request) for request in requests_from_settings(settings)]
    added = time.perf_counter() - started
    functions = len(engine.active())
    started = time.perf_counter()
    for handle in handles:
        handle.remove()
    return added, time.perf_counter() - started, functions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    trace.set_tracer_provider(TracerProvider())
    modules = load_modules()
    functions = package_functions(modules)
    print(
        f"{PACKAGE}.* with {len(sys.modules)} modules loaded ({len(modules)} of {PACKAGE}, "
        f"{len(functions)} functions and methods defined), {args.repeat} rounds, seconds"
    )
    rows: dict[str, list[tuple[float, float, int]]] = {name: [] for name in [*VARIANTS, BY_HAND]}
    for _ in range(args.repeat):
        for name, make in VARIANTS.items():
            rows[name].append(through_engine(make))
        add, remove = by_hand(functions)
        rows[BY_HAND].append((add, remove, len(functions)))
    print(
        f"{'variant':26} {'functions':>9} {'add first':>9} {'min':>9} {'median':>9}"
        f" {'remove min':>11} {'median':>9}"
    )
    for name, runs in rows.items():
        adds, removes = [r[0] for r in runs], [r[1] for r in runs]
        print(
            f"{name:26} {runs[0][2]:9d} {adds[0]:9.3f} {min(adds):9.3f} {statistics.median(adds):9.3f}"
            f" {min(removes):11.3f} {statistics.median(removes):9.3f}"
        )


if __name__ == "__main__":
    main()
