"""Finding the functions a pattern selects inside a loaded module.

A :class:`Site` is one place a function lives: the module or class whose ``__dict__`` holds it,
and the attribute name. Wrapping and restoring happen at sites, so restoring puts back exactly
the object that was there (a ``classmethod`` in its defining class, not a bound method).
"""

from __future__ import annotations

import functools
import importlib.machinery
import linecache
import sys
import types
from collections.abc import Iterator, Mapping
from typing import Any

from otel_scope.callables import DESCRIPTOR_KINDS, held_function, innermost_function, is_a
from otel_scope.config.patterns import TargetPattern, wildcard_skips


class Site:
    """One function at one attribute of a module or class.

    Never changed once made. A plain class, not a dataclass (which costs every start that loads
    the engine about 0.5 ms to create) nor a named tuple (mypy reads a named tuple's
    ``FunctionType`` field as a bound method); nothing compares sites, the engine keys them by
    :attr:`key`.
    """

    __slots__ = ("attr", "func", "module", "owner", "qualname", "raw")

    def __init__(
        self, owner: Any, attr: str, module: str, qualname: str, raw: Any, func: types.FunctionType | None
    ) -> None:
        self.owner = owner  # the module or class whose __dict__ holds the attribute
        self.attr = attr
        self.module = module
        self.qualname = qualname
        self.raw = raw  # the attribute as stored: function, classmethod or staticmethod
        # The plain function (for code, source and names); None for a compiled module's built-in
        # function, which gets a runtime span (wrapped at the attribute) and nothing else.
        self.func = func

    @property
    def key(self) -> tuple[int, str]:
        return (id(self.owner), self.attr)

    @property
    def full_name(self) -> str:
        return f"{self.module}.{self.qualname}"


def plain_function(raw: Any) -> types.FunctionType | None:
    """The Python function behind ``raw``, or None for what otel-scope leaves alone.

    Functions, methods, classmethods/staticmethods and what decorators make of them (``partial``,
    ``singledispatch``/``singledispatchmethod``, ``lru_cache``/``cache``, ``cached_property``,
    callable objects made with ``functools.update_wrapper``, wrapt proxies) are traced; their
    function gives the code and source. Properties, builtins and callables without Python code
    behind them are left alone: wrapping them could change behaviour, and they have no code.
    """
    if not (callable(raw) or issubclass(type(raw), (*DESCRIPTOR_KINDS, functools.cached_property))):
        return None
    return innermost_function(raw)


def site_at(owner: Any, attr: str, raw: Any, module: str, qualname: str) -> Site | None:
    """The site for ``owner.attr`` holding ``raw``, or None when nothing there can be traced.

    A ``cached_property`` is traced at its ``func`` attribute, not where it is stored: wrapping
    the descriptor itself would turn the cached value into a call wrapper. An object a decorator
    left at the name holding the function defined there (a click ``Command``:
    :func:`~otel_scope.callables.held_function`) is a site of that function.
    """
    func = plain_function(raw) or held_function(raw, module, qualname)
    if func is None:
        if compiled_callable(owner, raw):
            return Site(owner, attr, module, qualname, raw, None)
        return None
    if issubclass(type(raw), functools.cached_property):
        return Site(raw, "func", module, qualname, raw.func, func)
    return Site(owner, attr, module, qualname, raw, func)


def _selected(pattern: TargetPattern, module: str, qualname: str, attr: str) -> bool:
    if not pattern.matches(module, qualname):
        return False
    return not (pattern.is_wildcard and wildcard_skips(attr))


def _iter_class(
    cls: type, module: str, prefix: str, pattern: TargetPattern, seen: set[int]
) -> Iterator[Site]:
    if id(cls) in seen:
        return
    seen.add(id(cls))
    mangled = f"_{cls.__name__.lstrip('_')}__"
    for attr, raw in list(vars(cls).items()):
        # A private method is stored as ``_Cls__name`` but named ``Cls.__name`` in its source and
        # its __qualname__: patterns and span names use that, as compile-time capture does.
        name = attr[len(mangled) - 2 :] if attr.startswith(mangled) and not attr.endswith("__") else attr
        qualname = f"{prefix}.{name}"
        if is_a(raw, type) and raw.__qualname__ == qualname and _defined_in(raw, module):
            yield from _iter_class(raw, module, qualname, pattern, seen)
            continue
        if _selected(pattern, module, qualname, attr):
            site = site_at(cls, attr, raw, module, qualname)
            if site is not None and not (pattern.is_wildcard and _copied_in(site)):
                yield site


def _defined_in(cls: type, module: str) -> bool:
    """Whether ``cls`` is defined in ``module``, not imported into it: its ``__module__`` says so,
    or, where a package re-homed it to where users import it from (httpx's classes say ``httpx``,
    pytest's ``Skipped`` says ``builtins``), its own functions do (they keep their module's name)."""
    if cls.__module__ == module:
        return True
    for raw in list(vars(cls).values()):
        func = raw.__func__ if is_a(raw, (classmethod, staticmethod)) else raw
        if is_a(func, types.FunctionType) and func.__module__ == module:
            return True
    return False


def _copied_in(site: Site) -> bool:
    """Whether a class's function was defined by another module's class and copied into this
    one (``Enum._generate_next_value_`` into every enum, typing's ``_no_init_or_replace_init``
    into protocols): a wildcard selects what the module defines, and instrumenting the shared
    function would instrument the other module's classes too. Methods made for this class
    elsewhere (namedtuple's ``_make``, named ``Point._make``) are its own."""
    func = site.func
    return func is not None and func.__module__ != site.module and func.__qualname__ != site.qualname


def named_elsewhere(site: Site) -> bool:
    """Whether the function at ``site`` was defined under another name and copied in here
    (``Class.method = other.func``, ``from json import dumps``, a decorator's inner function).

    A pattern naming such a site exactly asks for that attribute, so its runtime span is a
    wrapper there only (:data:`THIS_NAME_ONLY`): a trampoline in the function's code, or other
    names repointed, would trace the function under every other name too. Methods made for this
    class elsewhere (namedtuple's ``_make``, named ``Point._make``) are its own.
    """
    func = site.func
    if func is None:
        return False
    if func.__qualname__ != site.qualname:
        return True
    return func.__module__ != site.module and is_a(site.owner, types.ModuleType)


# How the runtime span of an exactly named copied-in function is reached (``plan``, ``targets list``).
THIS_NAME_ONLY = "wrapper (this name only)"


def iter_sites(module: types.ModuleType, pattern: TargetPattern) -> Iterator[Site]:
    """Every function of ``module`` (and its classes, nested ones too) that ``pattern`` selects.

    Under a wildcard only objects *defined* in the module count (``from json import dumps`` does
    not make ``dumps`` part of the user's module); a pattern naming a function exactly may name a
    re-exported one.
    """
    name = module.__name__
    seen: set[int] = set()
    for attr, raw in list(vars(module).items()):
        if is_a(raw, type):
            if raw.__qualname__ == attr and _defined_in(raw, name):
                yield from _iter_class(raw, name, attr, pattern, seen)
            continue
        if not _selected(pattern, name, attr, attr):
            continue
        site = site_at(module, attr, raw, name, attr)
        defined_in = getattr(
            site.func if site is not None and site.func is not None else raw, "__module__", None
        )
        if site is None or (pattern.is_wildcard and (defined_in != name or _not_its_own_name(site))):
            continue
        yield site


def _not_its_own_name(site: Site) -> bool:
    """Whether a module attribute holds a function under a name it was not defined with (a
    lambda, ``alias = f``, ``p = partial(f, 1)``): a wildcard selects ``def`` statements, as
    compile-time capture does, and the function itself is selected under its own name."""
    func = site.func
    return func is not None and func.__qualname__ != site.attr


def site_for_function(func: Any) -> Site | None:
    """The site where ``func`` is defined, found through its ``__module__`` and ``__qualname__``."""

    plain = plain_function(func)
    if plain is None:
        return None
    module = sys.modules.get(plain.__module__)
    if module is None or "<locals>" in plain.__qualname__:
        return None
    owner: Any = module
    parts = plain.__qualname__.split(".")
    for part in parts[:-1]:
        owner = vars(owner).get(part) if hasattr(owner, "__dict__") else None
        if not is_a(owner, (type, types.ModuleType)):
            return None
    site = site_at(owner, parts[-1], vars(owner).get(parts[-1]), plain.__module__, plain.__qualname__)
    return site if site is not None and site.func is plain else None


def compiled(module: types.ModuleType) -> bool:
    """Whether ``module`` is an extension module (C, Cython, mypyc: ``.so``/``.pyd``)."""
    filename = getattr(module, "__file__", None) or ""
    return isinstance(filename, str) and filename.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


_IMMUTABLE_TYPE = 1 << 8  # Py_TPFLAGS_IMMUTABLETYPE: a static type, whose attributes cannot be set
_NATIVE_METHODS = (types.MethodDescriptorType, types.ClassMethodDescriptorType)


def compiled_callable(owner: Any, raw: Any) -> bool:
    """Whether ``raw`` is a compiled module's callable that a wrapper at ``owner`` can reach.

    A compiled module's built-in functions, and the native methods of its classes (mypyc's
    classes are heap types: their method descriptors can be replaced by a wrapper on the class).
    Calls from Python code that look them up there get a span; calls inside the compiled code
    (mypyc calls native methods directly) do not. Static types (C classes) cannot be changed.
    """
    if is_a(owner, types.ModuleType):
        return is_a(raw, types.BuiltinFunctionType) and compiled(owner)
    if not is_a(owner, type) or owner.__flags__ & _IMMUTABLE_TYPE:
        return False
    # Only types are tested before the name is read: any other attribute of a class may run
    # the program's code when read (six.moves' lazy descriptors import a module).
    native = is_a(raw, _NATIVE_METHODS) or (
        is_a(raw, (staticmethod, classmethod)) and is_a(raw.__func__, types.BuiltinFunctionType)
    )
    if not native or "mypyc" in getattr(raw, "__name__", ""):  # __internal_mypyc_setup: mypyc's own
        return False
    home = sys.modules.get(owner.__module__)
    return is_a(home, types.ModuleType) and compiled(home)


# What a compiled module's functions get, said by `plan`, refusals and the README alike.
COMPILED_NOTE = "compiled module (.so): runtime spans only for Python-level callables; no locals"


def source_available(func: types.FunctionType | None) -> bool:
    """Whether compile-time rewriting can read this function's source.

    Asked for every function a pattern selects, so it reads only what the rewriter reads (the
    module's lines, cached by ``linecache``) instead of tokenizing the function's block with
    ``inspect.getsourcelines`` (milliseconds per function: seconds for a package).
    """
    code = getattr(func, "__code__", None)
    if not is_a(code, types.CodeType):
        return False
    lines = linecache.getlines(code.co_filename, getattr(func, "__globals__", None))
    return len(lines) >= code.co_firstlineno


def explain_no_match(module: types.ModuleType, pattern: TargetPattern) -> str:
    """One line saying why ``pattern`` selects nothing in the loaded ``module``.

    Names what is there instead: the kind of object a pattern names exactly, or the nearest
    names that exist (the way a typo is usually made: one name off, or the wrong class).
    """
    name = module.__name__
    if pattern.attr is None:
        return f"{name} defines no functions or methods that a wildcard selects"
    owner: Any = module
    walked: list[str] = []
    for part in pattern.attr.split("."):
        namespace = _namespace(owner)
        if namespace is None or part not in namespace:
            where = ".".join([name, *walked])
            if walked:
                candidates, query = _names(namespace or {}), part
            else:
                candidates, query = _all_names(module), pattern.attr
            import difflib  # only on this path: a pattern that selected nothing

            near = difflib.get_close_matches(query, candidates, n=3)
            hint = f" (nearest: {', '.join(near)})" if near else ""
            return f"{where} has no {part!r}{hint}"
        owner = namespace[part]
        walked.append(part)
    if pattern.attr_prefix:
        return f"{name}.{pattern.attr} has no functions or methods that a wildcard selects"
    return f"{name}.{pattern.attr} is {_what(owner)}"


def _namespace(owner: Any) -> dict[str, Any] | None:
    if is_a(owner, (type, types.ModuleType)):
        return dict(vars(owner))
    return None


def _names(namespace: Mapping[str, Any]) -> list[str]:
    return [k for k in namespace if not (k.startswith("__") and k.endswith("__"))]


def _all_names(module: types.ModuleType) -> list[str]:
    """Top-level names and ``Class.attr`` names of the module, for nearest-name hints."""
    found = _names(vars(module))
    for attr, raw in list(vars(module).items()):
        if is_a(raw, type) and raw.__module__ == module.__name__:
            found.extend(f"{attr}.{k}" for k in _names(vars(raw)))
    return found


def _what(raw: Any) -> str:
    """What ``raw`` is, for a pattern that names it but cannot trace it; says what is accepted."""
    accepted = "otel-scope traces Python functions, methods and the decorators around them"
    if plain_function(raw) is not None:
        return "a function, but excluded or already instrumented by another otel-scope engine"
    if is_a(raw, property):
        return f"a property (reading it is not a call; {accepted})"
    if is_a(raw, type):
        return f"a class: name its methods ({raw.__name__}.* or {raw.__name__}.__init__)"
    if is_a(raw, (types.BuiltinFunctionType, types.WrapperDescriptorType, types.MethodDescriptorType)):
        return f"a built-in function with no Python code ({accepted}; for a {COMPILED_NOTE})"
    if callable(raw):
        kind = type(raw)
        return (
            f"a callable {kind.__module__}.{kind.__qualname__} object with no Python function behind it "
            f"(no __wrapped__): name its class's method instead ({kind.__qualname__}.__call__)"
        )
    return f"a {type(raw).__name__} value, not a function ({accepted})"
