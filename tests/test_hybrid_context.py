"""Hybrid mode under concurrency: concurrent calls of the same function, traced at runtime and
at compile time, each get exactly one span carrying exactly their own events, in threads,
``concurrent.futures`` pools and asyncio tasks."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator

import pytest

from otel_scope.config import Settings, parse_pattern
from otel_scope.engine import Engine
from otel_scope.runtime import propagation
from otel_scope.targets.planner import Request
from runtime_samples import hybrid

MOD = "runtime_samples.hybrid"


@pytest.fixture
def engine(memory) -> Iterator[Engine]:
    e = Engine(Settings(mode="hybrid", loop_sample=50))
    for name in ("work", "awork"):
        e.add(Request(parse_pattern(f"{MOD}:{name}")))  # a span per call (runtime)
        e.add(Request(parse_pattern(f"{MOD}:{name}"), runtime=False, capture_locals=None))  # locals
    propagation.install()
    yield e
    propagation.uninstall()
    e.remove_all()


def _values(span, name: str) -> list[str]:
    return [
        e.attributes[f"otel_scope.var.{name}"]
        for e in span.events
        if e.name == "otel_scope.locals" and f"otel_scope.var.{name}" in e.attributes
    ]


def _check(spans, function: str, var: str, expected) -> None:
    calls = [s for s in spans if s.name == f"{MOD}.{function}"]
    assert len(calls) == 40  # one span per call, never a second compile-time one
    for span in calls:
        assert span.attributes["otel_scope.mechanism"] == "runtime"
        n = int(span.attributes["otel_scope.arg.n"])
        assert _values(span, var) == expected(n), n  # its own events, none of another call's


def test_concurrent_calls_in_a_thread_pool_keep_their_own_events(memory, engine) -> None:
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(hybrid.work, [n % 7 + 1 for n in range(40)]))
    assert results == [sum(range(n % 7 + 1)) for n in range(40)]
    _check(memory.spans(), "work", "i", lambda n: [str(i) for i in range(n)])


def test_concurrent_asyncio_tasks_keep_their_own_events(memory, engine) -> None:
    async def main() -> list[int]:
        return await asyncio.gather(*(hybrid.awork(n % 5 + 1) for n in range(40)))

    assert asyncio.run(main()) == [n % 5 + 1 for n in range(40)]
    _check(memory.spans(), "awork", "seen", lambda n: ["0", *[str(i + 1) for i in range(n)]])
