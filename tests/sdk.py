"""A real OTel SDK pipeline for in-process tests: TracerProvider -> in-memory exporter.

``installed_provider`` swaps the process-wide provider for one test and puts the previous one
back, so tests that need a different sampler or a fresh exporter do not leak into each other.
(``trace.set_tracer_provider`` refuses to run twice per process, hence the direct assignment.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Sampler

from otel_scope._sdk import global_provider, set_global_provider
from otel_scope.config import parse_pattern
from otel_scope.engine import Engine, Handle
from otel_scope.targets.planner import Request


class MemorySpans:
    def __init__(self, exporter: InMemorySpanExporter, provider: TracerProvider) -> None:
        self.exporter, self.provider = exporter, provider

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, suffix: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name.endswith(suffix)]

    def clear(self) -> None:
        self.exporter.clear()


@contextlib.contextmanager
def installed_provider(sampler: Sampler | None = None) -> Iterator[MemorySpans]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler) if sampler is not None else TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    previous = global_provider()
    set_global_provider(provider)
    try:
        yield MemorySpans(exporter, provider)
    finally:
        set_global_provider(previous)
        provider.shutdown()


def add_target(engine: Engine, pattern: str) -> Handle:
    """Trace ``pattern`` with ``engine`` as the Python API would (one request, default options)."""
    return engine.add(Request(parse_pattern(pattern)))
