"""Shared pytest fixtures for otel-scope's tests.

Several engineers add fixtures here; keep each one small and documented with why it exists.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from otel_scope.config import Settings
from otel_scope.engine import CompileTimeAdapter, Engine

# Test helpers (otlp_receiver, sdk, ...) are imported by bare name: pyproject sets pythonpath=tests.
from otlp_receiver import OtlpReceiver
from sdk import MemorySpans, installed_provider


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """A running OTLP trace receiver (gRPC and HTTP on 127.0.0.1), fresh for each test.

    Function-scoped so that no test can see another's spans and a test that leaves an exporter
    retrying cannot slow the next one: the ports die with the test.
    """
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture
def memory() -> Iterator[MemorySpans]:
    """The real SDK pipeline (TracerProvider -> in-memory exporter) as the global provider, for one
    test: in-process tests assert on the spans otel-scope actually made."""
    with installed_provider() as spans:
        yield spans


@pytest.fixture
def engine(memory) -> Iterator[Engine]:
    """An engine with both mechanisms and default settings, restored after the test (files that
    need other settings define their own ``engine``)."""
    e = Engine(Settings())
    e.compile_time = CompileTimeAdapter(e, e.settings)
    yield e
    e.remove_all()
