"""Every kind of callable runtime mode must handle (used by tests/test_runtime_*.py)."""

from __future__ import annotations

import asyncio
import contextlib
import functools


def add(a, b=2, *rest, scale=1, **extra):
    return (a + b + sum(rest)) * scale


def fail(message):
    raise ValueError(message)


async def async_double(x):
    await asyncio.sleep(0)
    return x * 2


def count_up(n):
    for i in range(n):
        received = yield i
        if received == "stop":
            return "stopped"
    return "done"


async def async_count(n):
    for i in range(n):
        await asyncio.sleep(0)
        yield i


async def async_stream(n):
    try:
        for i in range(n):
            yield i
    finally:
        add(0, 0)  # cleanup, run by aclose() when the consumer stops early


def decorated_helper(func):
    @functools.wraps(func)
    def inner(*args, **kwargs):
        return func(*args, **kwargs)

    return inner


@decorated_helper
def decorated(x):
    return x + 1


class Base:
    label = "base"

    def __init__(self, value=1):
        self.value = value

    def method(self, x):
        return self.value + x

    @classmethod
    def make(cls, value):
        return cls(value)

    @classmethod
    def which(cls):
        return cls.label

    @staticmethod
    def static(x):
        return x * 3

    @property
    def doubled(self):
        return self.value * 2

    def __repr__(self):
        raise RuntimeError("user __repr__ must never be called by otel-scope")

    class Inner:
        def deep(self):
            return "deep"


class Sub(Base):
    label = "sub"


@contextlib.asynccontextmanager
async def opened(value):
    yield value * 2


def _sync_wrapper(func):
    """A decorator that turns a coroutine function into a plain one but keeps ``__wrapped__``."""

    @functools.wraps(func)
    def run(*args, **kwargs):
        return asyncio.run(func(*args, **kwargs))

    return run


@_sync_wrapper
async def run_sync(x):
    return x + 1


class Formatter:
    """singledispatchmethod: no popular pure-Python library on PyPI uses it at a public name."""

    @functools.singledispatchmethod
    def show(self, value):
        return f"any:{value}"

    @show.register
    def _(self, value: int):
        return f"int:{value}"
