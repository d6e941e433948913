"""Finding the functions a pattern selects inside a loaded module.

A :class:`Site` is one place a function lives: the module or class whose ``__dict__`` holds it,
and the attribute name. Wrapping and restoring happen at sites, so restoring puts back exactly
the object that was there (a ``classmethod`` in its defining class, not a bound method).
"""

from __future__ import annotations

import linecache
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from otel_scope.targets.patterns import TargetPattern

# Under a wildcard, dunders are skipped (wrapping __repr__ or __getattr__ invites recursion and
# noise) except these, which are ordinary entry points into user code.
_WILDCARD_DUNDERS = frozenset({"__init__", "__call__", "__enter__", "__exit__", "__aenter__", "__aexit__"})


@dataclass(frozen=True)
class Site:
    """One function at one attribute of a module or class."""

    owner: Any  # the module or class whose __dict__ holds the attribute
    attr: str
    module: str
    qualname: str
    raw: Any  # the attribute as stored: function, classmethod or staticmethod
    func: types.FunctionType  # the plain function (for code, source and names)

    @property
    def key(self) -> tuple[int, str]:
        return (id(self.owner), self.attr)

    @property
    def full_name(self) -> str:
        return f"{self.module}.{self.qualname}"


def plain_function(raw: Any) -> types.FunctionType | None:
    """The Python function behind ``raw``, or None for what otel-scope leaves alone.

    Properties, other descriptors, builtins and callables without Python code are left alone:
    wrapping them could change behaviour, and they have no code to describe.
    """
    from otel_scope.runtime.wrappers import is_ours

    if is_ours(raw):
        raw = raw.__wrapped__
    if isinstance(raw, (classmethod, staticmethod)):
        raw = raw.__func__
    return raw if isinstance(raw, types.FunctionType) else None


def _selected(pattern: TargetPattern, module: str, qualname: str, attr: str) -> bool:
    if not pattern.matches(module, qualname):
        return False
    if pattern.is_wildcard and attr.startswith("__") and attr.endswith("__"):
        return attr in _WILDCARD_DUNDERS
    return True


def _iter_class(
    cls: type, module: str, prefix: str, pattern: TargetPattern, seen: set[int]
) -> Iterator[Site]:
    if id(cls) in seen:
        return
    seen.add(id(cls))
    for attr, raw in list(vars(cls).items()):
        qualname = f"{prefix}.{attr}"
        if isinstance(raw, type) and raw.__module__ == module and raw.__qualname__ == qualname:
            yield from _iter_class(raw, module, qualname, pattern, seen)
            continue
        func = plain_function(raw)
        if func is not None and _selected(pattern, module, qualname, attr):
            yield Site(cls, attr, module, qualname, raw, func)


def iter_sites(module: types.ModuleType, pattern: TargetPattern) -> Iterator[Site]:
    """Every function of ``module`` (and its classes, nested ones too) that ``pattern`` selects.

    Under a wildcard only objects *defined* in the module count (``from json import dumps`` does
    not make ``dumps`` part of the user's module); a pattern naming a function exactly may name a
    re-exported one.
    """
    name = module.__name__
    seen: set[int] = set()
    for attr, raw in list(vars(module).items()):
        if isinstance(raw, type):
            if raw.__module__ == name and raw.__qualname__ == attr:
                yield from _iter_class(raw, name, attr, pattern, seen)
            continue
        func = plain_function(raw)
        if func is None or not _selected(pattern, name, attr, attr):
            continue
        if pattern.is_wildcard and func.__module__ != name:
            continue
        yield Site(module, attr, name, attr, raw, func)


def site_for_function(func: Any) -> Site | None:
    """The site where ``func`` is defined, found through its ``__module__`` and ``__qualname__``."""
    import sys

    plain = plain_function(func) or plain_function(getattr(func, "__func__", None))
    if plain is None:
        return None
    module = sys.modules.get(plain.__module__)
    if module is None or "<locals>" in plain.__qualname__:
        return None
    owner: Any = module
    parts = plain.__qualname__.split(".")
    for part in parts[:-1]:
        owner = vars(owner).get(part) if hasattr(owner, "__dict__") else None
        if not isinstance(owner, (type, types.ModuleType)):
            return None
    raw = vars(owner).get(parts[-1])
    if raw is None or plain_function(raw) is not plain:
        return None
    return Site(owner, parts[-1], plain.__module__, plain.__qualname__, raw, plain)


def source_available(func: types.FunctionType) -> bool:
    """Whether compile-time rewriting can read this function's source.

    Asked for every function a pattern selects, so it reads only what the rewriter reads (the
    module's lines, cached by ``linecache``) instead of tokenizing the function's block with
    ``inspect.getsourcelines`` (milliseconds per function: seconds for a package).
    """
    code = getattr(func, "__code__", None)
    if not isinstance(code, types.CodeType):
        return False
    lines = linecache.getlines(code.co_filename, getattr(func, "__globals__", None))
    return len(lines) >= code.co_firstlineno
