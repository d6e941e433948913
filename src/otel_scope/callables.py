"""What stands behind a callable object, found without running user code.

Decorators hide the function that holds the code: ``classmethod``/``staticmethod`` and bound
methods keep it in ``__func__``; ``functools.partial``/``partialmethod``/``singledispatchmethod``
and ``cached_property`` in ``.func``; ``functools.wraps``/``update_wrapper`` (``lru_cache``,
``singledispatch``, class-based decorators) in ``__wrapped__`` in the object's own ``__dict__``;
wrapt proxies (otel-scope's own wrappers among them) in ``__wrapped__``.

Every step reads a known type's slot or the object's own ``__dict__``: never ``getattr`` on an
arbitrary object, whose ``__getattr__``/``__getattribute__`` is user code (a lazy proxy, a mock).
Both mechanisms and discovery use this one walk, so they agree on which function a target names.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any, TypeGuard, TypeVar, overload

import wrapt

from otel_scope import _forksafe

# Holders of the function in their ``func`` attribute (all pure data, no user code to run).
_FUNC_HOLDERS = (
    functools.partial,
    functools.partialmethod,
    functools.singledispatchmethod,
    functools.cached_property,
)
_METHOD_LIKE = (classmethod, staticmethod, types.MethodType)
# Descriptors that are not callable themselves but define callable attributes of a class.
DESCRIPTOR_KINDS = (classmethod, staticmethod, functools.partialmethod, functools.singledispatchmethod)
# wrapt's proxy base: FunctionWrapper and ObjectProxy both derive from it.
_PROXY = wrapt.BaseObjectProxy
_T = TypeVar("_T")


# The C descriptors of a function's and a bound method's slots, called directly: they never run
# user code (an object that only looks like a function may define __getattr__ or properties).
function_qualname: Callable[[types.FunctionType], str] = types.FunctionType.__dict__["__qualname__"].__get__
function_module: Callable[[types.FunctionType], object] = types.FunctionType.__dict__["__module__"].__get__
method_function: Callable[[types.MethodType], object] = types.MethodType.__dict__["__func__"].__get__


@overload
def is_a(obj: object, kinds: type[_T]) -> TypeGuard[_T]: ...
@overload
def is_a(obj: object, kinds: tuple[type, ...]) -> bool: ...
def is_a(obj: object, kinds: type | tuple[type, ...]) -> bool:
    """``isinstance`` by the object's own type. ``isinstance`` falls back to ``obj.__class__``,
    which a lazy proxy answers by running the program's code: reading ``__class__`` of Django's
    ``settings`` loads the settings (or raises, before ``settings.configure()``)."""
    return issubclass(type(obj), kinds)


def qualified_name(fn: types.FunctionType) -> str:
    """``module.qualname`` of a function (just the qualname if its module is not a string)."""
    module = function_module(fn)
    qualname = function_qualname(fn)
    return f"{module}.{qualname}" if type(module) is str else qualname


def _own_dict(obj: Any) -> dict[str, Any] | None:
    try:
        namespace = object.__getattribute__(obj, "__dict__")
    except (AttributeError, TypeError):
        return None
    return namespace if isinstance(namespace, dict) else None


def step_inward(obj: Any) -> Any:
    """The object ``obj`` delegates to (one decorator layer down), or None at the innermost."""
    kind = type(obj)
    if issubclass(kind, _PROXY):  # checked first: a proxy reports its wrapped object's class
        return obj.__wrapped__
    if issubclass(kind, _METHOD_LIKE):
        return obj.__func__
    if issubclass(kind, _FUNC_HOLDERS):
        return obj.func
    namespace = _own_dict(obj)
    return namespace.get("__wrapped__") if namespace is not None else None


def innermost_function(obj: Any) -> types.FunctionType | None:
    """The Python function whose code runs when ``obj`` is called, or None (builtins, C code)."""
    seen: set[int] = set()
    while id(obj) not in seen:
        seen.add(id(obj))
        inner = step_inward(obj)
        if inner is None:
            break
        obj = inner
    return obj if isinstance(obj, types.FunctionType) else None


def behind_python_wrapper(obj: Any) -> types.FunctionType | None:
    """The function behind a callable object of a Python class that ``functools.update_wrapper``
    made (pytest's ``@fixture`` returns such a ``FixtureFunctionDefinition``), else None.

    Its users check the object's very type (``type(obj) is FixtureFunctionDefinition``, which no
    proxy can pass), and often call the function behind it rather than the object (pytest runs
    fixtures so): such an object is traced through that function's code and left as it is.
    Objects of C types (``lru_cache``, ``partial``) are not: they are traced as what they are.
    """
    kind = type(obj)
    if issubclass(kind, (_PROXY, types.FunctionType, *_METHOD_LIKE, *_FUNC_HOLDERS)):
        return None
    namespace = _own_dict(obj)
    if namespace is None or "__wrapped__" not in namespace:
        return None
    return innermost_function(obj) if _called_in_python(kind) else None


def _called_in_python(kind: type) -> bool:
    """Whether calling an object of ``kind`` runs a Python ``__call__`` (a Python class's
    object, not a C type's such as ``lru_cache``'s, which is traced as what it is)."""
    call = next((vars(k)["__call__"] for k in kind.__mro__ if "__call__" in vars(k)), None)
    return isinstance(call, types.FunctionType)


def held_function(obj: Any, module: str, qualname: str) -> types.FunctionType | None:
    """The function defined as ``qualname`` in ``module`` that the callable object ``obj``
    keeps among its own attributes, or None.

    Some decorators leave an object of their own at the name and keep the function in an
    attribute of it: click's ``@command``/``@group.command()`` turn ``def hello`` into a
    ``Command`` holding it in ``callback`` (``@pass_context`` wraps it once more, with
    ``update_wrapper``), and click calls ``callback`` itself, not the module attribute. The
    function found is the ``def`` this very name made (same module, same qualified name), so
    a wildcard over the module selects it and nothing the object merely refers to. It is
    traced through its code, whoever calls it; the object stays the very object it was. Only
    objects of Python classes count (C types such as ``lru_cache`` are traced as what they are).
    """
    kind = type(obj)
    if issubclass(kind, (type, _PROXY)) or not _called_in_python(kind):
        return None
    namespace = _own_dict(obj)
    if namespace is None or "__wrapped__" in namespace:  # update_wrapper's: behind_python_wrapper
        return None
    for value in list(namespace.values()):
        func = innermost_function(value) if is_a(value, types.FunctionType) else None
        if func is not None and function_module(func) == module and function_qualname(func) == qualname:
            return func
    return None


def binds_arguments(obj: Any) -> bool:
    """Whether calling ``obj`` prepends arguments of its own (so positions do not match names)."""
    while obj is not None:
        if issubclass(type(obj), (functools.partial, functools.partialmethod)):
            return True
        obj = step_inward(obj) if not isinstance(obj, types.FunctionType) else None
    return False


_swap_lock = _forksafe.lock()


class CodeSwap:
    """``function`` runs ``code`` in place of ``original_code`` until :meth:`restore`.

    Both mechanisms that change a function in place (the runtime trampoline, compile-time
    recompilation) swap ``__code__`` so that every reference to the function (registries,
    ``functools.partial``, callbacks taken before the target) sees the change. Restoring is
    idempotent and thread-safe, and leaves alone a function whose code somebody else replaced
    meanwhile (a reload, another tool): that code is theirs now.
    """

    __slots__ = ("code", "function", "original_code", "restored")

    def __init__(self, function: types.FunctionType, code: types.CodeType) -> None:
        self.function = function
        self.original_code = self.holder().__code__
        self.code = code
        self.restored = False

    def holder(self) -> types.FunctionType:
        """The function object whose ``__code__`` this swap changes, asked at each step: the
        function itself, unless a subclass says its code lives elsewhere for now."""
        return self.function

    def apply(self) -> None:
        self.holder().__code__ = self.code

    def restore(self) -> bool:
        """Put the original code back; ``False`` if this swap was restored already."""
        with _swap_lock:
            if self.restored:
                return False
            self.restored = True
            holder = self.holder()
            if holder.__code__ is self.code:
                holder.__code__ = self.original_code
            return True
