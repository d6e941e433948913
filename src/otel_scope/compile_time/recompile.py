"""On-demand recompilation: instrument a function that is already imported, and undo it.

The function object keeps its identity; only its ``__code__`` is swapped. So every existing
reference (imported elsewhere, stored in a dict, a bound method, a decorator's closure) runs the
new code from its next call on, and a call already running finishes under the code it started
with. :meth:`Recompiled.restore` puts back the exact original code object.

The rewritten code comes from the same rewriter as the import hook, run on the module's current
source (``linecache``); the nested code object of the function is taken from the compiled module
and checked against the live one (same name, first line, arguments and free variables), so a
source file edited since the import is refused rather than half-applied.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import linecache
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import CodeType, FunctionType
from typing import Any

from otel_scope.compile_time.recorder import Probe, register
from otel_scope.compile_time.rewriter import rewrite_source
from otel_scope.compile_time.spec import FunctionSpec
from otel_scope.targets.plan import CapturePlan

_counter = itertools.count()
# Flags that change what calling the code means (future-import flags may legitimately differ).
_KIND_FLAGS = (
    inspect.CO_GENERATOR
    | inspect.CO_COROUTINE
    | inspect.CO_ASYNC_GENERATOR
    | inspect.CO_ITERABLE_COROUTINE
    | inspect.CO_VARARGS
    | inspect.CO_VARKEYWORDS
)
_lock = threading.Lock()


class RecompileError(ValueError):
    """The function cannot be recompiled; the message says why in one line."""


@dataclass
class Recompiled:
    """A function now running instrumented code; :meth:`restore` undoes it (idempotent)."""

    function: FunctionType
    original_code: CodeType
    code: CodeType
    probe: Probe
    seconds: float
    _restored: bool = field(default=False, repr=False)

    def restore(self) -> None:
        """Switch the probe off and put the original code object back."""
        with _lock:
            if self._restored:
                return
            self._restored = True
            # The probe global stays: a generator created under the new code but not started yet
            # reads it on its first step, and then runs the original body.
            self.probe.on = False
            if self.function.__code__ is self.code:
                self.function.__code__ = self.original_code


def unwrap(func: Any) -> FunctionType:
    """The plain function behind bound methods, classmethod/staticmethod and ``functools.wraps``."""
    seen = set()
    while id(func) not in seen:
        seen.add(id(func))
        if isinstance(func, functools.partial):
            func = func.func
        elif hasattr(func, "__func__"):
            func = func.__func__
        elif hasattr(func, "__wrapped__"):
            func = func.__wrapped__
        else:
            break
    if not isinstance(func, FunctionType):
        raise RecompileError(f"{func!r} is not a Python function")
    return func


@dataclass
class Prepared:
    """A function's rewritten code, made but not yet installed: :meth:`apply` swaps it in."""

    target: FunctionType
    made_from: CodeType  # the code it was rewritten from: stale if the function's code changed since
    code: CodeType
    probe_name: str
    spec: FunctionSpec
    seconds: float

    def apply(self) -> Recompiled:
        """Make the live function run the rewritten code."""
        probe = Probe(self.spec)
        with _lock:
            self.target.__globals__[self.probe_name] = probe
            register(self.probe_name, probe)
            original = self.target.__code__
            self.target.__code__ = self.code
        return Recompiled(self.target, original, self.code, probe, self.seconds)


def prepare(items: Sequence[tuple[Any, CapturePlan]]) -> list[Prepared | RecompileError]:
    """Rewrite every function of ``items`` with its plan, parsing each source file once.

    Recompiling N functions of one module costs one rewrite of the module, not N (libcst parses
    and positions the whole module either way). Returns, in the order of ``items``, what
    :meth:`Prepared.apply` installs, or the :class:`RecompileError` saying why not.
    """
    started = time.perf_counter()
    out: list[Prepared | RecompileError | None] = [None] * len(items)
    by_file: dict[tuple[str, str], list[tuple[int, FunctionType, CapturePlan]]] = {}
    for i, (func, plan) in enumerate(items):
        try:
            target = unwrap(func)
        except RecompileError as exc:
            out[i] = exc
            continue
        key = (target.__code__.co_filename, target.__module__)
        by_file.setdefault(key, []).append((i, target, plan))
    for (filename, module), group in by_file.items():
        lines = linecache.getlines(filename, group[0][1].__globals__)
        if not lines:
            for i, target, _plan in group:
                out[i] = RecompileError(f"no source for {target.__qualname__} ({filename})")
            continue
        prefix = f"_otel_scope_p_rc{next(_counter)}_"
        plans = {target.__qualname__: plan for _i, target, plan in group}
        result = rewrite_source("".join(lines), filename, module, plans, probe_prefix=prefix, prelude=False)
        seconds = (time.perf_counter() - started) / len(group)
        for i, target, _plan in group:
            out[i] = _prepared(target, result, seconds)
    return out  # type: ignore[return-value]


def _prepared(target: FunctionType, result: Any, seconds: float) -> Prepared | RecompileError:
    code = target.__code__
    new_code = _find_code(result.code, code)
    if new_code is None or target.__qualname__ not in result.instrumented:
        reason = result.skipped.get(target.__qualname__, "not found in the current source")
        return RecompileError(f"cannot recompile {target.__qualname__}: {reason}")
    if new_code.co_freevars != code.co_freevars:
        return RecompileError(f"cannot recompile {target.__qualname__}: its closure changed in the source")
    name = next(n for n in new_code.co_names if n in result.specs)  # the probe global it reads
    return Prepared(target, code, new_code, name, result.specs[name], seconds)


def recompile(func: Any, plan: CapturePlan) -> Recompiled:
    """Rewrite ``func`` per ``plan`` and make the live function use the new code."""
    (prepared,) = prepare([(func, plan)])
    if isinstance(prepared, RecompileError):
        raise prepared
    return prepared.apply()


def _find_code(module_code: CodeType, live: CodeType) -> CodeType | None:
    """The code object in ``module_code`` that corresponds to ``live``."""
    qualname = getattr(live, "co_qualname", None)
    stack = [module_code]
    while stack:
        current = stack.pop()
        for const in current.co_consts:
            if not isinstance(const, CodeType):
                continue
            if (
                const.co_name == live.co_name
                and const.co_firstlineno == live.co_firstlineno
                and getattr(const, "co_qualname", None) == qualname
                and const.co_argcount == live.co_argcount
                and const.co_posonlyargcount == live.co_posonlyargcount
                and const.co_kwonlyargcount == live.co_kwonlyargcount
                and const.co_flags & _KIND_FLAGS == live.co_flags & _KIND_FLAGS
            ):
                return const
            stack.append(const)
    return None
