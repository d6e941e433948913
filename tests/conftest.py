"""Shared pytest fixtures for otel-scope's tests.

Several engineers add fixtures here; keep each one small and documented with why it exists.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
from hypothesis import settings as hypothesis_settings

from budget import examples
from otel_scope.config import Settings
from otel_scope.engine import Engine

# Test helpers (otlp_receiver, sdk, ...) are imported by bare name: pyproject sets pythonpath=tests.
from otlp_receiver import OtlpReceiver
from sdk import MemorySpans, installed_provider

# Property tests without their own count search ``examples(100)``: see budget.py for why it scales.
hypothesis_settings.register_profile("otel-scope", max_examples=examples(100))
hypothesis_settings.load_profile("otel-scope")

# Every file the suite makes stays in a temporary directory, never in the user's ~/.cache or
# ~/.local/state: the rewrite cache and the default local store of this process and of every
# subprocess it starts (they inherit the environment). One directory per xdist worker.
_HOME = tempfile.mkdtemp(prefix="otel-scope-tests-")
os.environ["XDG_CACHE_HOME"] = os.path.join(_HOME, "cache")
os.environ["XDG_STATE_HOME"] = os.path.join(_HOME, "state")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_HOME, ignore_errors=True)


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
def runtime_engine() -> Iterator[Engine]:
    """An engine with the runtime mechanism only and no global provider of its own; every target
    it added is removed after the test, restoring the original objects."""
    e = Engine(Settings(mode="runtime"))
    yield e
    e.remove_all()


@pytest.fixture
def engine(memory) -> Iterator[Engine]:
    """An engine with both mechanisms and default settings, restored after the test (files that
    need other settings define their own ``engine``)."""
    e = Engine(Settings())
    yield e
    e.remove_all()
