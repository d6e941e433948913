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
import time
from dataclasses import dataclass, field
from types import CodeType, FunctionType
from typing import Any

from otel_scope import _forksafe
from otel_scope.compile_time.recorder import Probe, register
from otel_scope.compile_time.rewriter import rewrite_source
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
_lock = _forksafe.lock()


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


def recompile(func: Any, plan: CapturePlan) -> Recompiled:
    """Rewrite ``func`` per ``plan`` and make the live function use the new code."""
    started = time.perf_counter()
    target = unwrap(func)
    code = target.__code__
    filename = code.co_filename
    lines = linecache.getlines(filename, target.__globals__)
    if not lines:
        raise RecompileError(f"no source for {target.__qualname__} ({filename})")
    prefix = f"_otel_scope_p_rc{next(_counter)}_"
    plans = {target.__qualname__: plan}
    source = "".join(lines)
    result = rewrite_source(source, filename, target.__module__, plans, probe_prefix=prefix, prelude=False)
    new_code = _find_code(result.code, code)
    if new_code is None or target.__qualname__ not in result.instrumented:
        reason = result.skipped.get(target.__qualname__, "not found in the current source")
        raise RecompileError(f"cannot recompile {target.__qualname__}: {reason}")
    if new_code.co_freevars != code.co_freevars:
        raise RecompileError(f"cannot recompile {target.__qualname__}: its closure changed in the source")
    name = next(n for n in new_code.co_names if n in result.specs)  # the probe global it reads
    probe = Probe(result.specs[name])
    with _lock:
        target.__globals__[name] = probe
        register(name, probe)
        original = target.__code__
        target.__code__ = new_code
    return Recompiled(target, original, new_code, probe, time.perf_counter() - started)


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
