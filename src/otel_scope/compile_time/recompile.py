"""On-demand recompilation: instrument a function that is already imported, and undo it.

The function object keeps its identity; only its ``__code__`` is swapped. So every existing
reference (imported elsewhere, stored in a dict, a bound method, a decorator's closure) runs the
new code from its next call on, and a call already running finishes under the code it started
with. :meth:`Recompiled.restore` puts back the exact original code object. While the function
has a runtime trampoline, its own code lives on the trampoline's copy
(:func:`~otel_scope.runtime.trampoline.body_of`): that is the code read, checked and swapped,
so the runtime span and the recompiled body compose in any order of adding and removing.

The rewritten code comes from the same rewriter as the import hook, run on the module's current
source (``linecache``), after checking that this source is what the running code was compiled
from (:func:`_source_matches`): a file edited since the import is refused in one line, never run.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import linecache
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import CodeType, FunctionType
from typing import Any

from otel_scope import _forksafe
from otel_scope.callables import CodeSwap, innermost_function
from otel_scope.compile_time.hook import rewritten_from, source_digest
from otel_scope.compile_time.recorder import Probe, place, register
from otel_scope.compile_time.rewriter import module_part, rewrite_source
from otel_scope.compile_time.skips import Refusal
from otel_scope.compile_time.spec import PLACEHOLDER, PROBE_PREFIX, FunctionSpec
from otel_scope.runtime.trampoline import body_of
from otel_scope.targets.plan import CapturePlan

_counter = itertools.count()
_OWN_PREFIX = f"{PROBE_PREFIX}rc"  # + number: the probes of recompiled code (never the hook's)
# Flags that change what calling the code means (future-import flags may legitimately differ).
# CO_ITERABLE_COROUTINE is not among them: no compiler sets it, ``@types.coroutine`` adds it to
# the live code (asyncio's ``__sleep0``), so the recompiled code gets it back from there.
_KIND_FLAGS = (
    inspect.CO_GENERATOR
    | inspect.CO_COROUTINE
    | inspect.CO_ASYNC_GENERATOR
    | inspect.CO_VARARGS
    | inspect.CO_VARKEYWORDS
)
_lock = _forksafe.lock()


class RecompileError(Refusal):
    """The function cannot be recompiled; the message says why in one line."""


class Recompiled(CodeSwap):
    """A function now running instrumented code; :meth:`restore` undoes it (idempotent)."""

    __slots__ = ("probe", "seconds")

    def __init__(self, function: FunctionType, code: CodeType, probe: Probe, seconds: float) -> None:
        super().__init__(function, code)
        self.probe = probe
        self.seconds = seconds

    def holder(self) -> FunctionType:
        """Where the function's own code lives now (a trampoline's copy, or the function)."""
        return body_of(self.function)

    def restore(self) -> bool:
        """Switch the probe off and put the original code back.

        The probe stays among the new code's constants: a generator created under the new code
        but not started yet reads it on its first step, and then runs the original body.
        """
        self.probe.on = False
        return super().restore()


def unwrap(func: Any) -> FunctionType:
    """The plain function behind methods and decorators (see :mod:`otel_scope.callables`)."""
    target = innermost_function(func)
    if target is None:
        raise RecompileError(f"{type(func).__name__} object is not a Python function")
    return target


@dataclass
class Prepared:
    """A function's rewritten code, made but not yet installed: :meth:`apply` swaps it in."""

    target: FunctionType
    made_from: CodeType  # the code it was rewritten from: stale if the function's code changed since
    code: CodeType  # with its probe's placeholder (see apply)
    probe_name: str
    spec: FunctionSpec
    seconds: float
    # The probe and bound code made by the first apply of this probe's function in the batch: a
    # function listed under two names runs one code, so restoring either puts the original back.
    bound: dict[str, tuple[Probe, CodeType]]

    def apply(self) -> Recompiled:
        """Make the live function run the rewritten code, its new probe among the constants."""
        with _lock:
            made = self.bound.get(self.probe_name)
            if made is None:
                probe = Probe(self.spec, self.probe_name)
                made = self.bound[self.probe_name] = (probe, place(self.code, {self.probe_name: probe}))
                register(probe)
            probe, code = made
            done = Recompiled(self.target, code, probe, self.seconds)
            done.apply()
        return done


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
        if any(type(c) is Probe and c.key.startswith(_OWN_PREFIX) for c in own_code(target).co_consts):
            out[i] = RecompileError(
                f"{target.__qualname__} is recompiled already: the same function is reachable under "
                "several names, and one of them has it"
            )
            continue
        key = (own_code(target).co_filename, target.__module__)
        by_file.setdefault(key, []).append((i, target, plan))
    for (filename, module), group in by_file.items():
        lines = linecache.getlines(filename, group[0][1].__globals__)
        if not lines:
            for i, target, _plan in group:
                out[i] = RecompileError(f"no source for {target.__qualname__} ({filename})")
            continue
        source = "".join(lines)
        compiled: CodeType | None = None
        try:
            tree = ast.parse(source, filename)  # once: for the checks, then rewritten
            part = module_part(tree, [own_code(target).co_firstlineno for _i, target, _plan in group])
            compiled = compile(part, filename, "exec", dont_inherit=True)  # the functions as they are
        except (SyntaxError, ValueError):
            pass  # every function of the group is refused below
        current = []
        for i, target, plan in group:
            if compiled is not None and _source_matches(source, compiled, filename, own_code(target)):
                current.append((i, target, plan))
            else:
                out[i] = RecompileError(
                    f"cannot recompile {target.__qualname__}: {filename} no longer matches the running "
                    "code (edited since it was imported?); restart the program to trace the new code"
                )
        if not current:
            continue
        prefix = f"{_OWN_PREFIX}{next(_counter)}_"
        plans = {target.__qualname__: plan for _i, target, plan in current}
        result = rewrite_source(
            source, filename, module, plans, probe_prefix=prefix, for_recompile=True, tree=tree
        )
        seconds = (time.perf_counter() - started) / len(current)
        bound: dict[str, tuple[Probe, CodeType]] = {}
        for i, target, _plan in current:
            out[i] = _prepared(target, result, seconds, bound)
    return out  # type: ignore[return-value]


def own_code(target: FunctionType) -> CodeType:
    """``target``'s own code: what it runs, or what its runtime trampoline calls."""
    return body_of(target).__code__


def _prepared(
    target: FunctionType, result: Any, seconds: float, bound: dict[str, tuple[Probe, CodeType]]
) -> Prepared | RecompileError:
    code = own_code(target)
    new_code = _find_code(result.code, code)
    if new_code is None or target.__qualname__ not in result.instrumented:
        reason = result.skipped.get(target.__qualname__, "not found in the current source")
        return RecompileError(f"cannot recompile {target.__qualname__}: {reason}")
    if new_code.co_freevars != code.co_freevars:
        return RecompileError(f"cannot recompile {target.__qualname__}: its closure changed in the source")
    name = next(n for n in result.specs if PLACEHOLDER + n in new_code.co_consts)  # the probe it reads
    if code.co_flags & inspect.CO_ITERABLE_COROUTINE:  # @types.coroutine flagged the live code
        new_code = new_code.replace(co_flags=new_code.co_flags | inspect.CO_ITERABLE_COROUTINE)
    return Prepared(target, code, new_code, name, result.specs[name], seconds, bound)


def recompile(func: Any, plan: CapturePlan) -> Recompiled:
    """Rewrite ``func`` per ``plan`` and make the live function use the new code."""
    (prepared,) = prepare([(func, plan)])
    if isinstance(prepared, RecompileError):
        raise prepared
    return prepared.apply()


def _source_matches(source: str, compiled: CodeType, filename: str, live: CodeType) -> bool:
    """Whether ``source`` is what ``live`` was compiled from (``compiled``: from ``source``).

    Code the import hook rewrote is checked against the source text it was rewritten from; plain
    code is compared with the same function compiled again from ``source``: bytecode, constants
    (nested functions too), names and variables. The same line layout with another body (``i * 2``
    edited to ``i * 1000``) differs in its constants, so it is refused, never run.
    """
    imported = rewritten_from(filename)
    if imported is not None:
        return imported == source_digest(source)
    again = _find_code(compiled, live)
    return again is not None and _same_code(again, live)


def _same_code(a: CodeType, b: CodeType) -> bool:
    if (
        a.co_code != b.co_code
        or a.co_names != b.co_names
        or a.co_varnames != b.co_varnames
        or a.co_freevars != b.co_freevars
        or a.co_cellvars != b.co_cellvars
        or len(a.co_consts) != len(b.co_consts)
    ):
        return False
    for x, y in zip(a.co_consts, b.co_consts, strict=True):  # lengths compared above
        if isinstance(x, CodeType):
            if not (isinstance(y, CodeType) and _same_code(x, y)):
                return False
        elif type(x) is not type(y) or (x != y and repr(x) != repr(y)):  # repr: NaN equals itself
            return False
    return True


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
