"""Safe, bounded text for any Python value: the only way user values reach telemetry.

Everything otel-scope records about a value (arguments, return values, locals, object state)
passes through :class:`Serializer`. It runs inside the user's program on every traced call, so
it must never change what the program does, never fail, and stay cheap. Hence the rules:

* **No user code by default.** Tracing must not trigger a lazy database load in a property, a
  ``__repr__`` that takes a lock, or a ``__getattr__`` proxy that makes a network call. Only
  exact builtin and stdlib value types (``type(v) is int`` etc.) are passed to ``repr()``.
  Builtin containers are read through the builtin type's own methods (``dict.items(v)``,
  ``list.__len__(v)``), so a subclass's overrides are never called: a subclass is shown as
  ``ClassName(<the builtin's form>)``. Other objects are shown as ``ClassName(field=value, ...)``
  from their instance ``__dict__`` and ``__slots__``, read through the C descriptors that the
  interpreter itself created, never through ``getattr`` (so no properties, ``__getattr__`` or
  ``__getattribute__``). Type names, MROs and class namespaces are read through ``type``'s own
  descriptors, so a metaclass cannot intervene either. Types are cached by ``id()`` rather than
  hashed, because a metaclass can define ``__hash__``.
* **Short forms for code objects**: ``<function shop.orders.f>``, ``<bound method
  shop.orders.Order.pay>``, ``<class shop.orders.Order>``, ``<module shop.orders>``; exceptions
  as ``ValueError('msg')`` from their ``args``; enum members as ``Color.RED``; namedtuples as
  ``Point(x=1, y=2)``; objects without readable fields as ``<Order object>``.
* **Every cut is visible.** ``[... 3 items]`` / ``{... 2 items}`` / ``Order(...)`` beyond
  ``max_depth``; ``..., +N more`` beyond ``max_items``; ``…(+N chars)`` (``bytes`` for bytes)
  where text was cut to fit ``max_length``; ``<cycle: Node>`` for a value that contains itself.
* **Never raises.** A failure anywhere yields ``<unrepresentable: TypeName>`` for that value only.
  ``KeyboardInterrupt`` and ``SystemExit`` still propagate: swallowing them would change the
  program's behaviour.

Nesting depth counts from the value itself: with ``max_depth=2`` the value (depth 0), its items
(1) and their items (2) are opened; containers and objects at depth 3 become markers.

Two ways to show what a class's author wants instead of its fields:

* ``def __otel_scope_repr__(self) -> str`` defined in the class (looked up on the type, like a
  dunder, so an instance attribute of that name is just a field) is always called: its author
  opted in, as with Sentry's ``__sentry_repr__``. It is guarded like ``user_repr`` below; a
  result that is not a ``str`` is shown as ``<__otel_scope_repr__ returned int>``.
* ``user_repr=True`` (``OTEL_SCOPE_USER_REPR``) calls ``repr()`` on values whose class defines a
  ``__repr__`` of its own. An exception becomes ``<repr raised ValueError: ...>``, and a repr that
  triggers serialization itself (a traced ``__repr__``) is shown by fields on the inner call
  instead of recursing. **A repr that hangs or takes a long time cannot be interrupted**: Python
  offers no safe way to stop it from another thread, and the traced call waits for it. That is
  why the default never calls user reprs.
"""

from __future__ import annotations

import collections
import datetime
import enum
import pathlib
import sys
import threading
import types
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any, TypeVar, cast

from otel_scope.callables import method_function, qualified_name
from otel_scope.capture.redaction import REDACTED, Redactor
from otel_scope.capture.scrubbing import Scrubber

if TYPE_CHECKING:
    from otel_scope.config import Settings

IdPath = tuple[int, ...]  # ids of the containers and objects being rendered, outermost first
# A render is only ever called with values of the type it was registered for (the tables are keyed
# by type id and chosen along the MRO), which mypy cannot follow: hence Any for the value.
Render = Callable[[Any, IdPath, int], str]
Namespace = Mapping[str, object]  # a class's own __dict__
DictReader = Callable[[object, type], dict[str, object]]  # the getter of an instance __dict__

# Types remembered per serializer; past this the cache restarts (dynamic classes can be endless).
_TYPE_CACHE_LIMIT = 4096
# Ints beyond this are not converted to decimal: that is quadratic, and refused past 4300 digits.
_INT_LIMIT = 1 << 13000
_SMALL_INT = 10**19  # repr at most 20 characters
# Characters past the shown part of a long string that are still scanned for secrets.
_SCRUB_MARGIN = 256
_SECRET_VALUES_LIMIT = 1024  # values seen under secret names, remembered to hide their copies
_Text = TypeVar("_Text", str, bytes)

# Readers that bypass metaclasses, properties and __getattribute__: the C descriptors of the
# builtin types, called directly. Each is annotated with what the descriptor returns (object where
# user code can store anything). vars(cls) is cls.__dict__, spelled so where typeshed declares
# __dict__ as a property of the instances (ModuleType; type in older typeshed).
_type_namespace: Callable[[type], Namespace] = vars(type)["__dict__"].__get__
_type_mro: Callable[[type], tuple[type, ...]] = vars(type)["__mro__"].__get__
_type_qualname: Callable[[type], object] = vars(type)["__qualname__"].__get__
_type_module: Callable[[type], object] = vars(type)["__module__"].__get__
_exception_args: Callable[[BaseException], tuple[object, ...]] = BaseException.__dict__["args"].__get__
_module_namespace: Callable[[types.ModuleType], dict[str, Any]] = vars(types.ModuleType)["__dict__"].__get__
# Any: Serializer._datetime picks the one for the value's exact class, which mypy cannot follow.
_datetime_tzinfo: Callable[[Any], object] = datetime.datetime.__dict__["tzinfo"].__get__
_time_tzinfo: Callable[[Any], object] = datetime.time.__dict__["tzinfo"].__get__


class _PlainClass:
    pass


# The docstring of the instance-dict descriptor that every class statement gets.
_CLASS_DICT_DOC = _PlainClass.__dict__["__dict__"].__doc__

# Exact types whose repr is implemented by the interpreter or the stdlib and reads nothing the
# user defines (datetime and time are handled separately: their tzinfo may be user code).
_SAFE_REPR_TYPES: tuple[type, ...] = (
    bool,
    float,
    complex,
    type(None),
    type(...),
    type(NotImplemented),
    range,
    memoryview,
    datetime.date,
    datetime.timedelta,
    datetime.timezone,
    uuid.UUID,
    pathlib.PurePosixPath,
    pathlib.PureWindowsPath,
    pathlib.PosixPath,
    pathlib.WindowsPath,
    types.BuiltinFunctionType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.MethodWrapperType,
    types.ClassMethodDescriptorType,
    types.GetSetDescriptorType,
    types.MemberDescriptorType,
    types.GeneratorType,
    types.CoroutineType,
    types.AsyncGeneratorType,
    types.CodeType,
    types.FrameType,
    types.TracebackType,
)
# More such types, by module and name, looked up only once their module is loaded: a value of
# one cannot exist before that, and importing them here would cost every start (decimal and
# zoneinfo: about 1.5 ms).
_SAFE_REPR_LATER = (("decimal", "Decimal"), ("zoneinfo", "ZoneInfo"))


def _loaded_type(module: str, name: str) -> type | None:
    """``module.name`` if ``module`` is imported and it is a class, else ``None``."""
    found = getattr(sys.modules.get(module), name, None)
    return found if isinstance(found, type) else None


# Top-level names of standard-library modules: their objects are shown by type, not by fields.
_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ())) - {"__main__"}
# ... except these, which are plain bags of values worth spelling out.
_STDLIB_VALUES = frozenset({"types.SimpleNamespace", "functools.partial", "argparse.Namespace"})

# Modules whose classes' __repr__ is not "user code" for user_repr: the serializer renders their
# instances (containers, enums, exceptions) as well, without running the elements' reprs.
_LIBRARY_REPR_MODULES = ("builtins", "collections", "enum")


class _Container:
    """How to read one builtin container type without calling anything a subclass overrides.

    The readers take Any: they are the builtin's own unbound methods, called only with instances
    of that builtin (or of a subclass), as the dispatch by type guarantees.
    """

    __slots__ = ("close", "empty", "head", "length", "mapping", "name", "open")

    def __init__(
        self,
        name: str,
        length: Callable[[Any], int],
        head: Callable[[Any, int, int], Sequence[Any]],
        open_close: tuple[str, str],
        empty: str,
        mapping: bool = False,
    ) -> None:
        self.name, self.length, self.head, self.empty, self.mapping = name, length, head, empty, mapping
        self.open, self.close = open_close


def _first_items(items: Callable[[Any], Iterable[Any]]) -> Callable[[Any, int, int], list[Any]]:
    # list(...) copies the first k of n entries in one C loop, so no other thread can change the
    # container while it is being read ("dictionary changed size during iteration").
    return lambda v, n, k: list(items(v)) if n <= k else list(islice(items(v), k))


_LIST = _Container("list", list.__len__, lambda v, n, k: list.__getitem__(v, slice(k)), ("[", "]"), "[]")
_TUPLE = _Container("tuple", tuple.__len__, lambda v, n, k: tuple.__getitem__(v, slice(k)), ("(", ")"), "()")
_DICT = _Container("dict", dict.__len__, _first_items(dict.items), ("{", "}"), "{}", mapping=True)
_ORDERED = _Container(
    "OrderedDict",
    dict.__len__,
    _first_items(collections.OrderedDict.items),
    ("OrderedDict({", "})"),
    "OrderedDict()",
    mapping=True,
)
_SET = _Container("set", set.__len__, _first_items(set.__iter__), ("{", "}"), "set()")
_FROZENSET = _Container(
    "frozenset", frozenset.__len__, _first_items(frozenset.__iter__), ("frozenset({", "})"), "frozenset()"
)
_DEQUE = _Container(
    "deque",
    collections.deque.__len__,
    _first_items(collections.deque.__iter__),
    ("deque([", "])"),
    "deque([])",
)
_CONTAINERS = {
    id(list): _LIST,
    id(tuple): _TUPLE,
    id(dict): _DICT,
    id(collections.OrderedDict): _ORDERED,
    id(set): _SET,
    id(frozenset): _FROZENSET,
    id(collections.deque): _DEQUE,
}

# Subclasses of these scalars are shown as ClassName(<plain value>); the converters are the
# builtin's own and return an exact builtin copy.
_SCALAR_BASES: dict[int, Callable[[Any], object]] = {
    id(str): str.__str__,
    id(int): int.__int__,
    id(float): float.__float__,
    id(bytes): lambda v: bytes.__getitem__(v, slice(None)),
    id(bytearray): lambda v: bytearray.__getitem__(v, slice(None)),
}


class _UserCodeGuard(threading.local):
    """Per thread: True while a user repr runs, so serialization it triggers stays safe."""

    active = False


_guard = _UserCodeGuard()


class _TypeEntry:
    """What the serializer knows about one type: how to render it and what to call it."""

    __slots__ = ("name", "render", "short", "type")

    def __init__(self, t: type, render: Render, name: str, short: str) -> None:
        # Holding the type keeps its id() from being reused while the entry is cached.
        self.type, self.render, self.name, self.short = t, render, name, short


def _qualname(t: type) -> str:
    try:
        name = _type_qualname(t)
    except Exception:
        return "?"
    return name if type(name) is str else "?"


def _display_name(t: type) -> str:
    """The class name shown inside values: ``Order``, ``Outer.Inner``; not ``f.<locals>.Order``."""
    return _qualname(t).rpartition(".<locals>.")[2]


def _module_name(t: type) -> str | None:
    try:
        module = _type_module(t)  # a class body can leave __module__ unset or set it to anything
    except Exception:
        return None
    return module if type(module) is str else None


def _full_name(t: type) -> str:
    """``shop.orders.Order``; builtins keep their bare name (``int``)."""
    name = _qualname(t)
    module = _module_name(t)
    return f"{module}.{name}" if module is not None and module != "builtins" else name


def _count(n: int, noun: str = "item") -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _cut(text: str, budget: int, unit: str = "chars") -> str:
    """``text`` shortened to ``budget`` characters, ``…(+N chars)`` marker included.

    A text no longer than the marker itself is returned whole: cutting would not shorten it.
    """
    total = len(text)
    marker = len(str(total)) + len(unit) + 5
    if total <= max(budget, marker):
        return text
    keep = max(budget - marker, 0)
    return f"{text[:keep]}…(+{total - keep} {unit})"


def _read_dict(reader: DictReader | None, value: object, t: type) -> dict[str, object] | None:
    """The instance dict through ``reader`` (see ``Serializer._instance_dict_reader``), or None."""
    if reader is None:
        return None
    try:
        return reader(value, t)
    except AttributeError:  # a struct field that is not set
        return None


def _lookup(namespaces: list[Namespace], name: str) -> object:
    """The class attribute ``name`` as found along the MRO, without invoking any descriptor."""
    for namespace in namespaces:
        if name in namespace:
            return namespace[name]
    return None


def _in_mro(mro: tuple[type, ...], cls: type) -> bool:
    return any(c is cls for c in mro)  # identity: a metaclass may define __eq__


class Serializer:
    """Turns any value into a bounded string without running user code (see the module doc).

    Create one per process (or per settings) and reuse it: it learns each type once. Calling it
    is thread-safe. ``redacted`` counts values replaced by ``[redacted]``; it only grows, so a
    caller that wants the count for one span reads it before and after and takes the difference
    (under concurrency a redaction in another thread may be counted too; it is a hint, not an
    audit log). Setting it back to 0 is fine as well.
    """

    def __init__(
        self,
        max_length: int = 512,
        max_depth: int = 2,
        max_items: int = 20,
        user_repr: bool = False,
        redactor: Redactor | None = None,
    ) -> None:
        if max_length < 1 or max_depth < 0 or max_items < 1:
            raise ValueError(
                f"max_length={max_length}, max_depth={max_depth}, max_items={max_items}: "
                "accepted max_length >= 1, max_depth >= 0, max_items >= 1"
            )
        self.max_length = max_length
        self.max_depth = max_depth
        self.max_items = max_items
        self.user_repr = user_repr
        self.redactor = redactor if redactor is not None else Redactor()
        self.redacted = 0
        self._is_secret = self.redactor.is_secret
        self.scrubber = Scrubber(self.redactor)
        self._scrub = self.scrubber.scrub
        # The strings hidden() remembered: their copies are hidden wherever they show up. Read
        # (never changed) outside: a compile-time call's end checks its kept strings against it.
        self.secret_values: set[str] = set()
        self._int_high: int = 10 ** min(max_length - 1, 3000)  # at most max_length characters with "-"
        self._int_low = -self._int_high
        self._short_str = (max_length - 2) // 10  # repr escapes at most 10 characters per character
        renders: dict[type, Render] = dict.fromkeys(_SAFE_REPR_TYPES, self._builtin_repr)
        renders.update(
            {
                int: self._int,
                str: self._str,
                bytes: self._bytes,
                bytearray: self._bytes,
                datetime.datetime: self._datetime,
                datetime.time: self._datetime,
                types.FunctionType: self._function,
                types.MethodType: self._method,
                types.ModuleType: self._module,
                type: self._class,
            }
        )
        for t in (list, tuple, dict, collections.OrderedDict, set, frozenset, collections.deque):
            renders[t] = self._container_render(_CONTAINERS[id(t)], "", "")
        self._builtin_entries = {
            id(t): _TypeEntry(t, render, _full_name(t), _display_name(t)) for t, render in renders.items()
        }
        self._entries = dict(self._builtin_entries)

    @classmethod
    def from_settings(cls, settings: Settings) -> Serializer:
        """The serializer the user configured (value limits, ``user_repr``, redaction lists)."""
        return cls(
            max_length=settings.max_value_length,
            max_depth=settings.max_depth,
            max_items=settings.max_items,
            user_repr=settings.user_repr,
            redactor=Redactor(extra=settings.redact, exclude=settings.redact_exclude),
        )

    # --- public surface ---------------------------------------------------------------------

    def __call__(self, value: object) -> str:
        """``value`` as safe text of at most ``max_length`` characters (markers included)."""
        t = type(value)
        # Fast paths for the two commonest values; the limits guarantee repr fits max_length.
        if t is int:
            if self._int_low < value < self._int_high:  # type: ignore[operator]
                return repr(value)
        elif t is str and len(value) <= self._short_str:  # type: ignore[arg-type]
            if value in self.secret_values:
                self.redacted += 1
                return REDACTED
            text = self._scrub(value)  # type: ignore[arg-type]
            if text is not value:
                self.redacted += 1
            return repr(text)
        try:
            text = (self._entries.get(id(t)) or self._resolve(t)).render(value, (), self.max_length)
        except Exception:
            text = self._unrepresentable(t)
        return text if len(text) <= self.max_length else _cut(text, self.max_length)

    def scrub(self, text: str) -> str:
        """``text`` with secrets found by value hidden (see :mod:`~otel_scope.capture.scrubbing`).

        For text otel-scope builds from user values outside the serializer: exception messages,
        stack traces, status descriptions. Counted in :attr:`redacted` like a redacted name.
        """
        try:
            out = self._scrub(text)
        except Exception:
            return REDACTED  # text that cannot be checked is not trusted
        if out is not text:
            self.redacted += 1
        return out

    def named(self, name: str, value: object) -> str:
        """How an argument, local or attribute called ``name`` is recorded: redacted if secret."""
        try:
            secret = self._is_secret(name)
        except Exception:
            secret = True  # a name that cannot be checked is not trusted
        if secret:
            return self.hidden(value)
        return self(value)

    def hidden(self, value: object) -> str:
        """:data:`REDACTED` for a value under a secret name, remembered to hide its copies too.

        A password assigned to ``pw`` and then put in a list (``[user, pw]``) or passed on as
        ``*args`` has no name and no shape there; the same string is hidden wherever it shows up
        later in this process. Only strings of at least 6 characters are remembered (a short
        value such as ``""`` or ``"0"`` would hide ordinary data), at most 1024 of them.
        """
        self.redacted += 1
        self.remember_secret(value)
        return REDACTED

    def remember_secret(self, value: object) -> None:
        """Hide ``value``'s copies from now on (see :meth:`hidden`), without rendering it."""
        if type(value) is str and 6 <= len(value) <= 4096:
            known = self.secret_values
            if len(known) >= _SECRET_VALUES_LIMIT:
                known.clear()
            known.add(value)

    def type_name(self, value: object) -> str:
        """The qualified name of ``value``'s type (``shop.orders.Order``, ``int``)."""
        t = type(value)
        try:
            return (self._entries.get(id(t)) or self._resolve(t)).name
        except Exception:
            return "?"

    # --- dispatch -----------------------------------------------------------------------------

    def _walk(self, value: object, path: IdPath, budget: int) -> str:
        t = type(value)
        # Inline the commonest leaves: each saves a call, and containers are mostly leaves.
        if t is str:
            if value in self.secret_values:
                self.redacted += 1
                return REDACTED
            if len(value) < budget:  # type: ignore[arg-type]
                clean = self._scrub(value)  # type: ignore[arg-type]
                if clean is not value:
                    self.redacted += 1
                text = repr(clean)
                if len(text) <= budget:
                    return text
        elif t is int and -_SMALL_INT < value < _SMALL_INT and budget > 20:  # type: ignore[operator]
            return repr(value)
        try:
            return (self._entries.get(id(t)) or self._resolve(t)).render(value, path, budget)
        except Exception:
            return self._unrepresentable(t)

    def _unrepresentable(self, t: type) -> str:
        return f"<unrepresentable: {_display_name(t)}>"

    def _unrepresentable_render(self, t: type) -> Render:
        return lambda value, path, budget: self._unrepresentable(t)

    def _resolve(self, t: type) -> _TypeEntry:
        try:
            entry = self._build_entry(t)
        except Exception:
            entry = _TypeEntry(t, self._unrepresentable_render(t), _full_name(t), _display_name(t))
        if len(self._entries) >= _TYPE_CACHE_LIMIT:
            self._entries = dict(self._builtin_entries)
        self._entries[id(t)] = entry
        return entry

    def _build_entry(self, t: type) -> _TypeEntry:
        if any(t is _loaded_type(module, name) for module, name in _SAFE_REPR_LATER):
            return _TypeEntry(t, self._builtin_repr, _full_name(t), _display_name(t))
        mro = _type_mro(t)
        namespaces = [_type_namespace(c) for c in mro]
        short = _display_name(t)
        render = self._safe_render(t, mro, namespaces, short)
        protocol = _lookup(namespaces, "__otel_scope_repr__")
        if type(protocol) is types.FunctionType:
            render = self._guarded(protocol, render, "__otel_scope_repr__")
        elif self.user_repr and self._has_user_repr(mro, namespaces):
            render = self._guarded(repr, render, "repr")
        return _TypeEntry(t, render, _full_name(t), short)

    def _has_user_repr(self, mro: tuple[type, ...], namespaces: list[Namespace]) -> bool:
        for cls, namespace in zip(mro, namespaces, strict=True):
            if "__repr__" in namespace:
                return _module_name(cls) not in _LIBRARY_REPR_MODULES
        return False

    def _safe_render(self, t: type, mro: tuple[type, ...], namespaces: list[Namespace], short: str) -> Render:
        if _in_mro(mro, type):
            return self._class
        if _in_mro(mro, types.ModuleType):
            return self._module
        if _in_mro(mro, BaseException):
            return self._exception_render(short)
        if _in_mro(mro, enum.Enum):
            return self._enum_render(t, mro, namespaces, short)
        for cls in mro:
            container = _CONTAINERS.get(id(cls))
            if container is not None:
                if container is _TUPLE:
                    fields = _lookup(namespaces, "_fields")
                    if type(fields) is tuple and all(type(f) is str for f in fields):
                        return self._namedtuple_render(fields, short)
                return self._container_render(container, f"{short}(", ")")
            plain = _SCALAR_BASES.get(id(cls))
            if plain is not None:
                return self._scalar_subclass_render(plain, short)
        # No __module__ str gives None here: the AttributeError makes the type <unrepresentable>.
        if _module_name(t).partition(".")[0] in _STDLIB and _full_name(t) not in _STDLIB_VALUES:  # type: ignore[union-attr]
            # The standard library's plumbing (queues, locks, conditions, threads) is noise when
            # spelled out field by field; a user looking at a trace wants to know what it is.
            opaque = f"<{_full_name(t)} object>"
            return lambda value, path, budget: opaque
        return self._object_render(t, mro, namespaces, short)

    # --- scalars ------------------------------------------------------------------------------

    def _builtin_repr(self, value: object, path: IdPath, budget: int) -> str:
        text = repr(value)
        return text if len(text) <= budget else _cut(text, budget)

    def _int(self, value: int, path: IdPath, budget: int) -> str:
        if -_INT_LIMIT < value < _INT_LIMIT:
            text = repr(value)
            return text if len(text) <= budget else _cut(text, budget, "digits")
        return f"<int of {int.bit_length(value)} bits>"

    def _str(self, value: str, path: IdPath, budget: int) -> str:
        value = self._scrubbed_head(value, budget, self._scrub)
        if len(value) < budget:
            text = repr(value)
            if len(text) <= budget:
                return text
        return self._cut_text(value, budget, "chars")

    def _scrubbed_head(self, value: _Text, budget: int, scrub: Callable[[_Text], _Text]) -> _Text:
        """``value`` with secrets hidden in the part that can be shown (``budget`` and a margin).

        Only that part is scanned, so a megabyte string costs what its shown prefix costs; the
        margin covers a secret that starts before the cut and ends after it.
        """
        shown = budget + _SCRUB_MARGIN
        head = value if len(value) <= shown else value[:shown]
        clean = scrub(head)
        if clean is head:
            return value
        self.redacted += 1
        return clean if head is value else clean + value[shown:]

    def _bytes(self, value: bytes | bytearray, path: IdPath, budget: int) -> str:
        clean = self._scrubbed_head(bytes(value), budget, self.scrubber.scrub_bytes)
        value = clean if type(value) is bytes else bytearray(clean)
        if len(value) < budget:
            text = repr(value)
            if len(text) <= budget:
                return text
        return self._cut_text(value, budget, "bytes")

    def _cut_text(self, value: str | bytes | bytearray, budget: int, unit: str) -> str:
        """repr of the longest prefix of ``value`` that fits ``budget`` with the cut marker."""
        total = len(value)
        marker = len(str(total)) + len(unit) + 5
        if total <= marker:  # cutting would not make it shorter
            return repr(value)
        room = max(budget - marker, 0)
        keep = max(room - len(repr(value[:0])), 0)  # minus the quotes: '' b'' bytearray(b'')
        text = repr(value[:keep])
        if len(text) > room and keep:  # escapes (\x00, \U0001f600) made it longer: shrink once
            keep = keep * room // len(text)
            text = repr(value[:keep])
        return f"{text}…(+{total - keep} {unit})"

    def _datetime(self, value: datetime.datetime | datetime.time, path: IdPath, budget: int) -> str:
        cls: type[Any] = type(value)  # exactly datetime or time (registered for those only)
        tz = (_datetime_tzinfo if cls is datetime.datetime else _time_tzinfo)(value)
        tz_type = type(tz)
        if tz is None or tz_type is datetime.timezone or tz_type is _loaded_type("zoneinfo", "ZoneInfo"):
            return self._builtin_repr(value, path, budget)
        # Another tzinfo (pytz, dateutil, the user's) is Python code: render it safely instead.
        naive = repr(cls.replace(value, tzinfo=None))
        return f"{naive[:-1]}, tzinfo={self._walk(tz, path, budget - len(naive) - 10)})"

    def _function(self, value: types.FunctionType, path: IdPath, budget: int) -> str:
        return f"<function {qualified_name(value)}>"

    def _method(self, value: types.MethodType, path: IdPath, budget: int) -> str:
        function = method_function(value)
        if type(function) is types.FunctionType:
            return f"<bound method {qualified_name(function)}>"
        return f"<bound method of {_display_name(type(function))}>"

    def _class(self, value: type, path: IdPath, budget: int) -> str:
        return f"<class {_full_name(value)}>"

    def _module(self, value: types.ModuleType, path: IdPath, budget: int) -> str:
        name = dict.get(_module_namespace(value), "__name__")
        return f"<module {name}>" if type(name) is str else "<module>"

    def _scalar_subclass_render(self, plain: Callable[[object], object], short: str) -> Render:
        def render(value: object, path: IdPath, budget: int) -> str:
            return f"{short}({self._walk(plain(value), path, budget - len(short) - 2)})"

        return render

    # --- containers and objects ---------------------------------------------------------------

    def _container_render(self, kind: _Container, prefix: str, suffix: str) -> Render:
        """Render for ``kind`` or a subclass of it (``prefix`` ``ClassName(``, ``suffix`` ``)``)."""
        overhead = len(prefix) + len(kind.open) + len(kind.close) + len(suffix)
        label = prefix[:-1] or kind.name
        length, head, mapping, tuple_like = kind.length, kind.head, kind.mapping, kind is _TUPLE

        def render(value: object, path: IdPath, budget: int) -> str:
            n = length(value)
            if not n:
                return f"{prefix}{kind.empty}{suffix}"
            if len(path) > self.max_depth:
                return f"{prefix}{kind.open}... {_count(n)}{kind.close}{suffix}"
            key = id(value)
            if key in path:
                return f"<cycle: {label}>"
            first = head(value, n, self.max_items)
            if mapping:
                inner = self._pairs(first, n, (*path, key), budget - overhead, fields=False)
            elif tuple_like and n == 2 and self._names_secret(first[0]):
                # ("Authorization", "Bearer ...") in a header list: the pair's key names a secret.
                self.redacted += 1
                inner = f"{self._walk(first[0], (*path, key), budget - overhead - 12)}, {REDACTED}"
            else:
                inner = self._items(first, n, (*path, key), budget - overhead)
                if tuple_like and n == 1 and len(first) == 1:
                    inner += ","
            return f"{prefix}{kind.open}{inner}{kind.close}{suffix}"

        return render

    def _items(self, items: Iterable[object], n: int, path: IdPath, room: int) -> str:
        """The first of ``n`` items that fit in ``room`` characters, then ``..., +N more``.

        An item after a secret flag (``"--password"``, ``"-token"``) is redacted: a list of
        strings is often a command line (``sys.argv``, a ``subprocess`` argument list).

        Each item gets the room left, minus space for the marker if items follow it; an item that
        still does not fit (its own cut marker is wider than the room) is counted, not shown.
        So the result fits ``room`` unless even ``..., +N more`` alone does not.
        """
        walk = self._walk
        reserve = len(str(n)) + 13  # ", ..., +N more"
        parts: list[str] = []
        used = 0
        hide = False  # the previous item was a secret command-line flag ("--token", then its value)
        for item in items:
            limit = room - used - (reserve if n - len(parts) > 1 else 0)
            if limit <= 0:
                break
            if hide:
                hide = False
                self.redacted += 1
                text = REDACTED
            else:
                text = walk(item, path, limit)
                if type(item) is str and item[:1] == "-" and len(item) <= 64 and "=" not in item:
                    hide = self._is_secret(item.lstrip("-"))
            if len(text) > limit:
                break
            parts.append(text)
            used += len(text) + 2
        if len(parts) < n:
            parts.append(f"..., +{n - len(parts)} more")
        return ", ".join(parts)

    def _pairs(
        self, pairs: Iterable[tuple[object, object]], n: int, path: IdPath, room: int, fields: bool
    ) -> str:
        """``key: value`` (dicts) or ``name=value`` (fields), redacting secret names."""
        walk = self._walk
        known = self.redactor.known
        reserve = len(str(n)) + 13  # ", ..., +N more"
        parts: list[str] = []
        used = 0
        for key, value in pairs:
            limit = room - used - (reserve if n - len(parts) > 1 else 0)
            if limit <= 0:
                break
            if type(key) is str:
                secret = known.get(key)
                if secret is None:
                    secret = self._is_secret(key)
                label = (key if fields else repr(self.scrub(key))) if len(key) <= 64 else walk(key, path, 64)
            else:
                secret = self._names_secret(key)
                label = walk(key, path, limit)
            text = REDACTED if secret else walk(value, path, limit - len(label) - 2)
            part = f"{label}={text}" if fields else f"{label}: {text}"
            if len(part) > limit:
                break
            if secret:
                self.hidden(value)
            parts.append(part)
            used += len(part) + 2
        if len(parts) < n:
            parts.append(f"..., +{n - len(parts)} more")
        return ", ".join(parts)

    def _names_secret(self, key: object) -> bool:
        """Whether a key that is not an exact ``str`` (a str subclass, ``bytes``) names a secret."""
        if isinstance(key, str):
            return self._is_secret(str.__str__(key))
        if type(key) is bytes and len(key) <= 128:  # b"password" in a header dict or a pair
            return self._is_secret(key.decode("latin-1"))
        return False

    def _namedtuple_render(self, fields: tuple[str, ...], short: str) -> Render:
        tuple_render = self._container_render(_TUPLE, f"{short}(", ")")

        def render(value: tuple[object, ...], path: IdPath, budget: int) -> str:
            n = tuple.__len__(value)
            if n != len(fields):
                return tuple_render(value, path, budget)
            if len(path) > self.max_depth:
                return f"{short}(...)"
            key = id(value)
            if key in path:
                return f"<cycle: {short}>"
            pairs = zip(fields, tuple.__getitem__(value, slice(self.max_items)), strict=False)
            inner = self._pairs(pairs, n, (*path, key), budget - len(short) - 2, fields=True)
            return f"{short}({inner})"

        return render

    def _exception_render(self, short: str) -> Render:
        def render(value: BaseException, path: IdPath, budget: int) -> str:
            args = _exception_args(value)
            n = tuple.__len__(args)
            if not n:
                return f"{short}()"
            if len(path) > self.max_depth:
                return f"{short}(...)"
            key = id(value)
            if key in path:
                return f"<cycle: {short}>"
            first = tuple.__getitem__(args, slice(self.max_items))
            inner = self._items(first, n, (*path, key), budget - len(short) - 2)
            return f"{short}({inner})"

        return render

    def _enum_render(self, t: type, mro: tuple[type, ...], namespaces: list[Namespace], short: str) -> Render:
        fallback = self._object_render(t, mro, namespaces, short)
        instance_dict = self._instance_dict_reader(namespaces)

        def render(value: object, path: IdPath, budget: int) -> str:
            attributes = _read_dict(instance_dict, value, t)
            if attributes is None:
                return fallback(value, path, budget)
            name = dict.get(attributes, "_name_")
            if type(name) is str:
                return f"{short}.{name}"
            # A combination of flags without a name (Python 3.10): show its value.
            return f"{short}({self._walk(dict.get(attributes, '_value_'), path, budget - len(short) - 2)})"

        return render

    @staticmethod
    def _instance_dict_reader(namespaces: list[Namespace]) -> DictReader | None:
        """The getter of the ``__dict__`` descriptor that ``class`` statements create, if any.

        A class may shadow it with a property, so the MRO is searched past that. Only the
        interpreter's own descriptor is trusted: a C extension's ``__dict__`` getter can run
        anything (wrapt's ``ObjectProxy`` reads the wrapped object's ``__dict__`` through its
        ``__getattribute__``). The interpreter's one is recognised by its docstring, a static C
        string that extensions do not reuse; a member descriptor (a struct field read by the
        interpreter) is safe too. Objects with another kind are shown without those fields.
        """
        for namespace in namespaces:
            descriptor: Any = namespace.get("__dict__")  # a C descriptor once its type is checked
            kind = type(descriptor)
            if (kind is types.GetSetDescriptorType and descriptor.__doc__ == _CLASS_DICT_DOC) or (
                kind is types.MemberDescriptorType  # a plain struct field (SimpleNamespace): safe
            ):
                return cast(DictReader, descriptor.__get__)
        return None

    def _object_render(
        self, t: type, mro: tuple[type, ...], namespaces: list[Namespace], short: str
    ) -> Render:
        slots: dict[str, Callable[[object, type], object]] = {}
        for namespace in reversed(namespaces):  # base classes first, like construction order
            for name, descriptor in namespace.items():
                if (
                    type(descriptor) is types.MemberDescriptorType
                    and type(name) is str
                    and not (name.startswith("__") and name.endswith("__"))
                ):
                    slots[name] = descriptor.__get__
        slot_readers = tuple(slots.items())
        instance_dict = self._instance_dict_reader(namespaces)

        def render(value: object, path: IdPath, budget: int) -> str:
            key = id(value)
            if key in path:
                return f"<cycle: {short}>"
            fields = []
            for name, read in slot_readers:
                try:
                    fields.append((name, read(value, t)))
                except AttributeError:  # an empty slot
                    pass
            n = len(fields)
            attributes = _read_dict(instance_dict, value, t)
            if attributes is not None:
                n += dict.__len__(attributes)
            if not n:
                return f"<{short} object>"
            if len(path) > self.max_depth:
                return f"{short}(...)"
            room = self.max_items - len(fields)
            if room < 0:
                del fields[self.max_items :]
            elif attributes is not None:
                fields += islice(dict.items(attributes), room)  # copied in one C loop
            inner = self._pairs(fields, n, (*path, key), budget - len(short) - 2, fields=True)
            return f"{short}({inner})"

        return render

    # --- opted-in user code -------------------------------------------------------------------

    def _guarded(self, call: Callable[[object], object], fallback: Render, what: str) -> Render:
        """Render by calling user code, falling back to ``fallback`` when already inside some."""

        def render(value: object, path: IdPath, budget: int) -> str:
            if _guard.active:
                return fallback(value, path, budget)
            _guard.active = True
            try:
                text = call(value)
            except Exception as exc:
                return f"<{what} raised {self._describe(exc)}>"
            finally:
                _guard.active = False
            if type(text) is not str:
                if not issubclass(type(text), str):
                    return f"<{what} returned {_display_name(type(text))}>"
                text = str.__str__(text)
            text = self._scrubbed_head(text, budget, self._scrub)
            return text if len(text) <= budget else _cut(text, budget)

        return render

    def _describe(self, exc: BaseException) -> str:
        """``ValueError: message`` for an exception a user repr raised, built without str(exc)."""
        args = _exception_args(exc)
        n = tuple.__len__(args)
        if n == 1 and type(args[0]) is str:
            message = _cut(self._scrubbed_head(args[0], 200, self._scrub), 200)
        else:
            message = self._items(tuple.__getitem__(args, slice(self.max_items)), n, (), 200)
        return f"{_display_name(type(exc))}: {message}"
