"""Instance state before and after a call: which attributes of ``self`` the call changed.

For a method whose target is in ``--scope-state``, the runtime wrapper takes a :func:`snapshot` of
the receiver before the call and hands it to :func:`record_changes` after. Only attributes whose
recorded form differs become ``otel_scope.state`` events (name, before, after): an unchanged
object adds nothing to the span, so the timeline shows exactly what the call did to its object.

Why the values are compared as serialized text and not by identity: ``self.reserved[item] = n``
mutates a dict in place, so the attribute still holds the same object afterwards. Comparing the
safe serializer's text sees that change, and it is also exactly what the event would show: two
values that serialize the same would only produce a ``x -> x`` line. The flip side, documented
in ``docs/emitted-data.md``: a change past the serializer's limits (depth, items, length) is not
seen.

Why it stays cheap: most attributes are never serialized unless they changed. Exact immutable
scalars (``int``, ``str``, ...), and tuples of them, are kept as references and compared by
identity. Small exact lists, dicts and deques holding only such scalars (at most ``max_items``,
so their text shows every item) are kept as a shallow copy of their items' references, taken
and compared in C (``tuple(...)``, ``map(operator.is_, ...)``): replacing or mutating them,
``self.reserved[item] = n`` included, changes an item reference. Only what is left (objects,
nested or large containers) is serialized before and after. A candidate change is confirmed by
serializing both sides, so a value replaced by an equal one records nothing.

Attributes are read the way the serializer reads objects: the instance ``__dict__`` through the
interpreter's own ``__dict__`` descriptor and ``__slots__`` through their member descriptors,
both found along the MRO via ``type``'s own descriptors. No property, ``__getattr__``,
``__getattribute__`` or metaclass hook of the user's runs, and types are cached by ``id()``.
"""

from __future__ import annotations

import collections
import logging
import operator
import types
from collections.abc import Callable
from typing import Any

from opentelemetry.trace import Span

from otel_scope import semconv
from otel_scope.capture import REDACTED, Serializer

_log = logging.getLogger("otel_scope")

#: Shown as ``before`` for an attribute the call added, and as ``after`` for one it deleted.
UNSET = "<unset>"

#: Attributes compared per object, in definition order; an object with more is compared on these
#: only. The SDK keeps at most 128 events per span, so more could not be recorded anyway.
MAX_ATTRIBUTES = 128

# Exact types whose value cannot change in place: kept by reference, serialized only if replaced.
# Keyed by id(): hashing a type could run a metaclass's __hash__.
_IMMUTABLE = frozenset(id(t) for t in (int, float, complex, bool, str, bytes, type(None)))

_LIST, _DICT, _DEQUE, _TUPLE = (id(t) for t in (list, dict, collections.deque, tuple))
_STR = frozenset((id(str),))
_is = operator.is_

# vars(type) is type.__dict__ (older typeshed declares type.__dict__ as a property of instances).
_type_namespace = vars(type)["__dict__"].__get__
_type_mro = vars(type)["__mro__"].__get__

Reader = Callable[[object, type], Any]


class _Layout:
    """Where one type keeps its instance attributes; computed once per type."""

    __slots__ = ("instance_dict", "slots", "type")

    def __init__(self, t: type) -> None:
        self.type = t  # holding the type keeps its id() from being reused while cached
        namespaces = [_type_namespace(c) for c in _type_mro(t)]
        slots: dict[str, Reader] = {}
        for namespace in reversed(namespaces):  # base classes first, like construction order
            for name, descriptor in namespace.items():
                if type(descriptor) is types.MemberDescriptorType and type(name) is str:
                    slots[name] = descriptor.__get__
        self.slots = tuple(slots.items())
        self.instance_dict: Reader | None = None
        for namespace in namespaces:  # a class may shadow "__dict__"; find the interpreter's own
            descriptor = namespace.get("__dict__")
            if type(descriptor) is types.GetSetDescriptorType:
                self.instance_dict = descriptor.__get__
                break


_layouts: dict[int, _Layout] = {}


def _layout(t: type) -> _Layout:
    layout = _layouts.get(id(t))
    if layout is None:
        if len(_layouts) > 4096:  # dynamically created classes can be endless
            _layouts.clear()
        layout = _layouts[id(t)] = _Layout(t)
    return layout


def _attributes(obj: object) -> dict[str, Any]:
    """``obj``'s attributes by name, read without running any of its code."""
    t = type(obj)
    layout = _layout(t)
    found: dict[str, Any] = {}
    if layout.instance_dict is not None:
        namespace = layout.instance_dict(obj, t)
        if namespace:
            # Copied in one C call, so another thread cannot change it mid-read, and without
            # hashing anything. Names are plain str as a rule; any other key (whose __hash__
            # could be user code) is left out. A dict subclass is read through dict's own items().
            if type(namespace) is dict and _STR.issuperset(map(id, map(type, namespace))):
                found = dict.copy(namespace)
            else:
                found = {k: v for k, v in list(dict.items(namespace)) if type(k) is str}
    for name, read in layout.slots:
        try:
            found[name] = read(obj, t)
        except AttributeError:  # an empty slot
            pass
    if len(found) > MAX_ATTRIBUTES:
        found = dict(list(found.items())[:MAX_ATTRIBUTES])
    return found


def _all_immutable(items: Any) -> bool:
    # ids of types, in C: hashing a type could run a metaclass's __hash__.
    return _IMMUTABLE.issuperset(map(id, map(type, items)))


def _items(value: Any, kind: int) -> tuple[Any, ...]:
    """The item references of an exact list, deque or dict (keys, then values), copied in C."""
    if kind == _DICT:
        return (*dict.keys(value), *dict.values(value))
    return tuple(value)


def _rebuild(kind: int, items: tuple[Any, ...]) -> Any:
    """A container equal to the one ``items`` was taken from, to serialize its old value."""
    if kind == _DICT:
        half = len(items) // 2
        return dict(zip(items[:half], items[half:], strict=True))
    return list(items) if kind == _LIST else collections.deque(items)


class Snapshot:
    """The receiver's attributes before a call (see the module docstring for the three kinds)."""

    __slots__ = ("copied", "kept", "text")

    def __init__(self) -> None:
        self.kept: dict[str, Any] = {}  # immutable values, by reference
        self.copied: dict[str, tuple[Any, int, tuple[Any, ...]]] = {}  # (container, kind, item references)
        self.text: dict[str, str] = {}  # everything else, serialized


def receiver_of(instance: Any) -> Any:
    """The object whose state a call may change, or ``None`` (functions, class and static methods).

    ``instance`` is what wrapt passes: the bound object for a method call (also when the method
    was called through the class), the class for a classmethod, ``None`` for a plain function.
    """
    if instance is None or isinstance(instance, type):
        return None
    return instance


def snapshot(obj: Any, serializer: Serializer) -> Snapshot | None:
    """What ``obj``'s attributes look like now; ``None`` if they cannot be read (never raises)."""
    try:
        snap = Snapshot()
        kept, copied, text = snap.kept, snap.copied, snap.text
        small = serializer.max_items
        for name, value in _attributes(obj).items():
            kind = id(type(value))
            if kind in _IMMUTABLE or (kind == _TUPLE and _all_immutable(value)):
                kept[name] = value
            elif kind in (_LIST, _DEQUE, _DICT) and len(value) <= small:
                items = _items(value, kind)
                if _all_immutable(items):
                    copied[name] = (value, kind, items)
                else:
                    text[name] = serializer(value)
            else:
                text[name] = serializer(value)
        return snap
    except Exception:
        _log.debug("otel-scope could not read the state of a %s", serializer.type_name(obj), exc_info=True)
        return None


def changes(before: Snapshot, obj: Any, serializer: Serializer) -> list[tuple[str, str, str]]:
    """The attributes of ``obj`` that differ from ``before``, as (name, before, after) text."""
    kept, copied, text = before.kept, before.copied, before.text
    found: list[tuple[str, str, str]] = []
    now = _attributes(obj)
    for name, value in now.items():
        if name in kept:
            old = kept[name]
            if old is value:
                continue
            old_text = serializer(old)
        elif name in copied:
            container, kind, items = copied[name]
            if value is container:
                current = _items(value, kind)
                if len(current) == len(items) and all(map(_is, current, items)):
                    continue
            old_text = serializer(_rebuild(kind, items))
        else:
            old_text = text.get(name, UNSET)
        new_text = serializer(value)
        if new_text != old_text:
            found.append((name, old_text, new_text))
    for name in kept.keys() - now.keys():
        found.append((name, serializer(kept[name]), UNSET))
    for name in copied.keys() - now.keys():
        _, kind, items = copied[name]
        found.append((name, serializer(_rebuild(kind, items)), UNSET))
    for name in text.keys() - now.keys():
        found.append((name, text[name], UNSET))
    return found


def _secret(serializer: Serializer, name: str) -> bool:
    try:
        return bool(serializer.redactor.is_secret(name))
    except Exception:
        return True  # a name that cannot be checked is not trusted (as for arguments)


def record_changes(span: Span, before: Snapshot | None, obj: Any, serializer: Serializer) -> None:
    """Add one ``otel_scope.state`` event to ``span`` per attribute the call changed (never raises).

    A secret-looking attribute name (the redaction rules of arguments and locals) is still
    reported as changed, with both values replaced by the redaction marker.
    """
    if before is None:
        return
    try:
        found = changes(before, obj, serializer)
        if not found:
            return
        session = format(span.get_span_context().trace_id, "032x")
        for name, old, new in found:
            if _secret(serializer, name):
                old = new = REDACTED
                serializer.redacted += 2
            span.add_event(
                semconv.EVENT_STATE,
                {
                    semconv.STATE_ATTRIBUTE: name,
                    semconv.STATE_BEFORE: old,
                    semconv.STATE_AFTER: new,
                    semconv.MECHANISM: semconv.MECHANISM_RUNTIME,
                    semconv.SESSION_ID: session,
                },
            )
    except Exception:
        _log.debug("otel-scope could not record the state of a %s", serializer.type_name(obj), exc_info=True)
