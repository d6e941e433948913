"""Code trampolines: a traced function that every reference reaches, not only its attribute.

Wrapping the attribute (``module.f = wrapper(f)``) misses every reference taken before: Flask's
``app.view_functions``, ``HANDLERS[name] = f`` registries, callbacks, ``functools.partial``
holders. Here the function object stays where it is and only its ``__code__`` is swapped for a
trampoline with the same signature, free variables and kind, which calls the probe with a copy
of the original function (the ``__code__``-level approach ddtrace's ``internal/wrapping`` takes,
built from source instead of bytecode). So every holder of the function reaches the probe from
its next call, and :meth:`Trampoline.restore` puts back the exact original code object.

The trampoline first tests whether to trace the call, with no call into otel-scope. For a probe
with a call sampler, ``probe.gate.tick()``, one C call, numbers the call, and a number below
``probe.gate.next_check`` means switched off or left out by call sampling (most calls of a
package-wide target); only the other calls ask ``probe.skip_at(number)``. A probe without one
keeps every call while switched on, so its trampoline reads ``probe.gate.next_check`` alone
(1 while switched off, else 0) and numbers nothing. A skipped call
runs the original copy straight from the trampoline, a plain Python-to-Python call with no
argument tuple made and no otel-scope frame in between (a skipped call that raises is still
handed to ``probe.failed_late``); any other goes to ``probe.traced``, and what it raises
leaves with otel-scope's frames taken out of its traceback. Its code takes the original's
name, file and first line, and every instruction is put on that line, with no column, so
tracebacks and ``inspect`` point at the user's function (its ``def`` line, with no carets under
part of it). It reads the probe and the copy from a :class:`_Holder` among its own constants:
never a closure (the function's ``__closure__`` must keep fitting the code's free variables), nor
a module global, which Python sets to None at interpreter exit while finalizers may still call
the function (multiprocessing's ``Connection.__del__`` calls its ``_close``).
"""

from __future__ import annotations

import ast
import functools
import inspect
import os
import types
import weakref
from typing import Any, NamedTuple

from otel_scope import _forksafe
from otel_scope.callables import CodeSwap
from otel_scope.capture.sampling import SHUT

_lock = _forksafe.lock()
# Flags a trampoline can reproduce: a plain function, a generator (``yield from``), a coroutine.
_UNSUPPORTED = inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE
# Every function with a trampoline now (by any engine): installing twice is refused.
_installed: weakref.WeakKeyDictionary[types.FunctionType, Trampoline] = weakref.WeakKeyDictionary()
# Every trampoline's code: frame walkers treat these frames as otel-scope's, not the user's.
_codes: weakref.WeakSet[types.CodeType] = weakref.WeakSet()


def unsupported(func: types.FunctionType) -> str | None:
    """Why ``func`` cannot get a trampoline (then the attribute is wrapped), or None."""
    code = func.__code__
    if code.co_flags & _UNSUPPORTED:
        return "an async generator (its asend/athrow cannot be forwarded by a trampoline)"
    if not isinstance(func.__globals__, dict):
        return "its globals are not a dict"
    return None


class Trampoline(CodeSwap):
    """``function`` now runs ``code`` (the trampoline), which calls ``body``, a copy of the
    function holding its own code; :meth:`restore` undoes it (idempotent).

    While the trampoline is in place, compile-time capture changes the body's code, never the
    function's (:func:`body_of`), so the two compose in any order: restoring the trampoline puts
    back the code the body has *then* (the original, or the recompiled code still wanted), and
    restoring a recompilation puts the original back wherever the function's own code lives.
    A call already inside the trampoline when it is restored finishes normally.
    """

    __slots__ = ("body", "reads")

    def __init__(
        self, function: types.FunctionType, code: types.CodeType, body: types.FunctionType, holder: _Holder
    ) -> None:
        super().__init__(function, code)
        self.body = body
        self.reads = holder  # what the trampoline's code reads

    def restore(self) -> bool:
        with _lock:  # as install(): the registry and the code change together
            self.original_code = self.body.__code__  # the function's own code now
            if not super().restore():
                return False
            if _installed.get(self.function) is self:  # not a newer trampoline of the same function
                del _installed[self.function]
            # The code may still run (see install), but lets go of the probe: live add/remove
            # cycles would otherwise keep every probe, with its sampler and counts, for good.
            self.reads.probe = _RESTORED
            return True


class _Holder:
    """What a trampoline's code reads (one of its constants): the probe, and the copy of the
    function that holds the original code."""

    __slots__ = ("copy", "probe", "unlink")

    def __init__(self, probe: Any, copy: types.FunctionType) -> None:
        self.probe = probe
        self.copy = copy
        self.unlink = _without_own_frames


class _Restored:
    """The probe a restored trampoline's holder has: what still runs the trampoline code (a
    call inside it at the restore, a generator made under it and started later) runs untraced."""

    __slots__ = ()

    gate = SHUT  # every call skipped

    def traced(self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return wrapped(*args, **kwargs)  # a call that passed the gate just before the restore

    def failed_late(self, exc: Exception, instance: Any, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        return None


_RESTORED = _Restored()


def body_of(func: types.FunctionType) -> types.FunctionType:
    """The function object holding ``func``'s own code now: the trampoline's copy while ``func``
    has a trampoline, else ``func``. Compile-time capture reads and swaps this one's code."""
    installed = _installed.get(func)
    return installed.body if installed is not None else func


def install(func: types.FunctionType, probe: Any) -> Trampoline:
    """Make every call of ``func`` go through ``probe`` (a ``RuntimeProbe``); see the module doc."""
    why = unsupported(func) or ("already has a trampoline" if func in _installed else None)
    if why is not None:
        raise ValueError(f"{func.__qualname__} cannot get a code trampoline: {why}")
    original = func.__code__
    copy = types.FunctionType(original, func.__globals__, func.__name__, func.__defaults__, func.__closure__)
    copy.__kwdefaults__ = func.__kwdefaults__
    copy.__qualname__ = func.__qualname__
    copy.__module__ = func.__module__
    copy.__dict__.update(func.__dict__)
    # The holder outlives restore: a generator made under the trampoline but not started yet
    # reads it on its first step (and then calls the copy straight, untraced).
    holder = _Holder(probe, copy)
    code = _trampoline_code(original, holder, gated=probe.sampler is not None)
    with _lock:
        done = _installed[func] = Trampoline(func, code, copy, holder)
        done.apply()
        _codes.add(code)
    return done


_OWN_FILES = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # otel_scope/


def _without_own_frames(error: BaseException) -> None:
    """Take otel-scope's frames (the probe's, the span's) out of the traceback of an exception
    leaving a traced call, as the trampoline re-raises it.

    The program then prints and walks the traceback it would have without otel-scope, but for
    one frame: the trampoline's own, which carries the function's name, file and ``def`` line
    (a frame cannot remove itself from a traceback). Nothing is cut when the exception comes
    from otel-scope itself.
    """
    here = error.__traceback__  # the trampoline's frame: the exception is being handled in it
    if here is None:
        return
    after = here.tb_next
    while after is not None and after.tb_frame.f_code.co_filename.startswith(_OWN_FILES):
        after = after.tb_next
    if after is not None and after is not here.tb_next:
        here.tb_next = after


# Stands for the holder in a template's source; each trampoline has its own holder in its place
# among the constants (no compile folds an attribute read of a string).
_PLACEHOLDER = "\x00otel-scope trampoline holder"
_KINDS = inspect.CO_VARARGS | inspect.CO_VARKEYWORDS | inspect.CO_COROUTINE | inspect.CO_GENERATOR


class _Shape(NamedTuple):
    """What a trampoline's code depends on, besides its holder and its names."""

    n_pos: int
    n_posonly: int
    n_kw: int
    flags: int  # the original's flags among _KINDS
    n_free: int
    gated: bool  # the probe has a call sampler: the entry test numbers each call


# A template's parameters and free variables, renamed to the function's own in its code. Free
# variables are numbered with zeros in front: the compiler orders them by name, and must keep
# them in the order of the function's (also by name), which its ``__closure__`` follows.
def _param(i: int) -> str:
    return f"_otel_scope_p{i}"


def _free(i: int) -> str:
    return f"_otel_scope_f{i:04d}"


def _trampoline_code(original: types.CodeType, holder: _Holder, gated: bool) -> types.CodeType:
    """A function with ``original``'s parameters, free variables and kind that asks the probe
    whether to trace this call (see the module doc), every instruction on the def line.

    Built from one compiled template per shape (parsing and compiling a source costs about
    0.4 ms): the counts of each kind of parameter and of free variables, so the 671 functions of
    jinja2 need 44 templates, not one per signature (265). The template's placeholder, file,
    first line and names (of the parameters and free variables, which its code refers to by
    position, and as strings only where it passes keyword arguments on) are then replaced by
    this function's holder and its own.
    """
    flags = original.co_flags & _KINDS
    free = original.co_freevars
    shape = _Shape(
        original.co_argcount, original.co_posonlyargcount, original.co_kwonlyargcount, flags, len(free), gated
    )
    try:
        template = _template(shape)
    except ValueError:
        raise ValueError(f"{original.co_name}: the trampoline does not fit its signature") from None
    names = original.co_varnames[: _parameter_count(shape)]
    own = {_param(i): name for i, name in enumerate(names)}
    own.update({_free(i): name for i, name in enumerate(free)})
    replace: dict[str, Any] = {
        "co_consts": tuple(holder if c == _PLACEHOLDER else _renamed(c, own) for c in template.co_consts),
        "co_varnames": names + template.co_varnames[len(names) :],
        "co_freevars": free,
        "co_filename": original.co_filename,
        "co_firstlineno": original.co_firstlineno,
        "co_name": original.co_name,
    }
    if hasattr(original, "co_qualname"):
        replace["co_qualname"] = original.co_qualname
    return template.replace(**replace)


def _parameter_count(shape: _Shape) -> int:
    """How many of the code's first local variables are its parameters (``*args``, ``**kw`` too)."""
    return (
        shape.n_pos
        + shape.n_kw
        + bool(shape.flags & inspect.CO_VARARGS)
        + bool(shape.flags & inspect.CO_VARKEYWORDS)
    )


def _renamed(const: Any, own: dict[str, str]) -> Any:
    """A template constant with the placeholder names in it (a keyword's name, a tuple of them
    for a call's keywords or a dict's keys) replaced by the function's own."""
    if type(const) is str:
        return own.get(const, const)
    if type(const) is tuple:
        return tuple(_renamed(c, own) for c in const)
    return const


@functools.lru_cache(maxsize=512)
def _template(shape: _Shape) -> types.CodeType:
    flags = shape.flags
    names = tuple(_param(i) for i in range(_parameter_count(shape)))
    positional = list(names[: shape.n_pos])
    keyword = list(names[shape.n_pos : shape.n_pos + shape.n_kw])
    i = shape.n_pos + shape.n_kw
    varargs = varkw = None
    if flags & inspect.CO_VARARGS:
        varargs = names[i]
        i += 1
    if flags & inspect.CO_VARKEYWORDS:
        varkw = names[i]
    params = list(positional)
    if shape.n_posonly:
        params.insert(shape.n_posonly, "/")
    if varargs is not None:
        params.append("*" + varargs)
    elif keyword:
        params.append("*")
    params += keyword
    if varkw is not None:
        params.append("**" + varkw)
    star = ["*" + varargs] if varargs else []
    double_star = ["**" + varkw] if varkw else []
    args = ", ".join([*positional, *star])
    kwargs = ", ".join([*(f"{k!r}: {k}" for k in keyword), *double_star])
    direct = ", ".join([*positional, *star, *(f"{k}={k}" for k in keyword), *double_star])
    packed = f"({args}{',' if args else ''}), {{{kwargs}}}"
    probe, copy, unlink = (f"{_PLACEHOLDER!r}.{part}" for part in ("probe", "copy", "unlink"))
    straight, traced = f"{copy}({direct})", f"{probe}.traced({copy}, None, {packed})"
    if flags & inspect.CO_COROUTINE:
        prefix, straight, traced = "async ", f"await {straight}", f"await {traced}"
    elif flags & inspect.CO_GENERATOR:
        prefix, straight, traced = "", f"(yield from {straight})", f"(yield from {traced})"
    else:
        prefix = ""
    free = tuple(_free(i) for i in range(shape.n_free))
    # The free variables are named (never evaluated) so the code keeps the function's closure.
    keep = f" if 1 else ({', '.join(free)},)" if free else ""
    cells = f"    {' = '.join(free)} = None\n" if free else ""
    if flags & (inspect.CO_COROUTINE | inspect.CO_GENERATOR):
        # Their calls only make the generator or coroutine; what raises, raises in its steps.
        skipped = f"        return {straight}\n"
    else:  # a call left out that raises is still recorded
        skipped = (
            f"        try:\n            return {straight}\n"
            f"        except Exception as _otel_scope_e:\n"
            f"            {probe}.failed_late(_otel_scope_e, None, {packed})\n            raise\n"
        )
    # What the traced call raises leaves without otel-scope's frames in its traceback.
    through = (
        f"     try:\n         return {traced}{keep}\n"
        f"     except BaseException as _otel_scope_e:\n         {unlink}(_otel_scope_e)\n         raise\n"
    )
    if shape.gated:  # the call's number stays in a local for skip_at (see the module doc)
        test = f"(_otel_scope_n := {probe}.gate.tick()) < {probe}.gate.next_check"
        test += f" or {probe}.skip_at(_otel_scope_n)"
    else:
        test = f"{probe}.gate.next_check"
    source = (
        f"def _make():\n{cells}    {prefix}def _f({', '.join(params)}):\n"
        f"     if {test}:\n{skipped}{through}    return _f\n"
    )
    tree = ast.parse(source)
    inner = tree.body[0].body[-2]  # type: ignore[attr-defined]
    # One line, with no columns: tracebacks and inspect point at the def line only, and no
    # traceback marks part of it with carets (columns of the template's source would).
    for node in ast.walk(inner):
        if "lineno" in node._attributes:
            node.lineno = node.end_lineno = inner.lineno  # type: ignore[attr-defined]
            node.col_offset = node.end_col_offset = -1  # type: ignore[attr-defined]
    namespace: dict[str, Any] = {}
    exec(compile(tree, "<otel-scope trampoline>", "exec", dont_inherit=True), namespace)
    code: types.CodeType = namespace["_make"]().__code__
    if (
        code.co_freevars != free
        or code.co_varnames[: len(names)] != names
        or _PLACEHOLDER not in code.co_consts
    ):
        raise ValueError("the trampoline does not fit its signature")
    return code


def installed(func: Any) -> bool:
    """Whether ``func`` currently runs a trampoline."""
    return isinstance(func, types.FunctionType) and func in _installed


def is_trampoline(code: types.CodeType) -> bool:
    """Whether ``code`` is a trampoline's (its frame is otel-scope's, though it names user code)."""
    return code in _codes
