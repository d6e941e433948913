"""Helpers shared by the compile-time tests: an in-memory SDK and loading rewritten samples."""

import contextlib
import re
import sys
import types
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_scope._sdk import global_provider, set_global_provider
from otel_scope.compile_time import rewrite_source
from otel_scope.targets.plan import CapturePlan

SAMPLES = Path(__file__).resolve().parent
_counter = iter(range(1_000_000))


@contextlib.contextmanager
def memory_spans(sampler=None):
    """A real SDK provider with an in-memory exporter, made global for the duration."""
    kwargs = {"sampler": sampler} if sampler is not None else {}
    provider = TracerProvider(**kwargs)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    previous = global_provider()
    set_global_provider(provider)
    try:
        yield exporter
    finally:
        set_global_provider(previous)


def sample_path(name):
    return SAMPLES / f"{name}.py"


def line_of(name, marker):
    """The line of sample ``name`` carrying the comment ``# @marker``."""
    for number, text in enumerate(sample_path(name).read_text().splitlines(), 1):
        if re.search(rf"# @{re.escape(marker)}\b", text):
            return number
    raise LookupError(marker)


def load(name, plans=None, level="locals", source=None):
    """Rewrite sample ``name`` (every function by default) and execute it as a fresh module."""
    path = sample_path(name)
    source = path.read_text() if source is None else source
    if plans is None:
        plans = {"*": CapturePlan(level=level, target=f"{name}:*")}
    module_name = f"sample_{name}_{next(_counter)}"
    result = rewrite_source(source, str(path), module_name, plans)
    module = types.ModuleType(module_name)
    module.__file__ = str(path)
    sys.modules[module_name] = module
    exec(result.code, module.__dict__)
    module.REWRITE = result
    return module


def load_original(name):
    path = sample_path(name)
    module_name = f"original_{name}_{next(_counter)}"
    module = types.ModuleType(module_name)
    module.__file__ = str(path)
    sys.modules[module_name] = module
    exec(compile(path.read_text(), str(path), "exec"), module.__dict__)
    return module


def events(span, name="otel_scope.locals"):
    return [e for e in span.events if e.name == name]


def var_events(span, var):
    """(line, value) of every locals event carrying ``var``."""
    key = "otel_scope.var." + var
    return [
        (e.attributes["code.line.number"], e.attributes[key]) for e in events(span) if key in e.attributes
    ]


def only_span(exporter, suffix):
    spans = [s for s in exporter.get_finished_spans() if s.name.endswith(suffix)]
    assert len(spans) == 1, [s.name for s in exporter.get_finished_spans()]
    return spans[0]
