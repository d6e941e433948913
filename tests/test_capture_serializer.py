"""The safe serializer: what it shows, what it never calls, and how it bounds its output."""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import string
import sys
import types
import zoneinfo
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from budget import examples
from otel_scope.capture import Serializer
from otel_scope.config import Settings

HERE = __name__


# --- scalars and builtin containers -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (42, "42"),
        (-7, "-7"),
        (True, "True"),
        (None, "None"),
        (1.5, "1.5"),
        (1 + 2j, "(1+2j)"),
        ("hi", "'hi'"),
        (b"\x00a", "b'\\x00a'"),
        (bytearray(b"a"), "bytearray(b'a')"),
        (range(3), "range(0, 3)"),
        ([1, "a"], "[1, 'a']"),
        ((1,), "(1,)"),
        ((), "()"),
        ({"a": 1}, "{'a': 1}"),
        ({1}, "{1}"),
        (set(), "set()"),
        (frozenset({2}), "frozenset({2})"),
        (collections.deque([1, 2]), "deque([1, 2])"),
        (collections.OrderedDict(a=1), "OrderedDict({'a': 1})"),
        (datetime.date(2024, 5, 1), "datetime.date(2024, 5, 1)"),
    ],
)
def test_builtin_values_look_like_their_repr(value: object, text: str) -> None:
    assert Serializer()(value) == text


def test_a_long_string_is_cut_to_max_length_with_the_number_of_missing_characters() -> None:
    text = Serializer(max_length=50)("x" * 1000)
    assert 45 <= len(text) <= 50
    kept = text.count("x")
    assert text == "'" + "x" * kept + f"'…(+{1000 - kept} chars)"


def test_long_bytes_are_cut_and_counted_in_bytes() -> None:
    text = Serializer(max_length=40)(b"\x01" * 500)
    assert len(text) <= 40
    assert text.endswith(" bytes)")
    assert "…(+" in text


def test_a_string_of_escapes_stays_within_max_length() -> None:
    text = Serializer(max_length=60)("\x00" * 1000)
    assert len(text) <= 60
    assert "…(+" in text


def test_a_large_int_is_cut_and_a_huge_one_is_summarised_without_converting_it() -> None:
    assert Serializer(max_length=30)(10**100).endswith("digits)")
    assert Serializer()(10**100000) == f"<int of {(10**100000).bit_length()} bits>"


def test_items_beyond_max_items_are_counted() -> None:
    serializer = Serializer(max_items=3)
    assert serializer(list(range(10))) == "[0, 1, 2, ..., +7 more]"
    assert serializer({i: i for i in range(5)}) == "{0: 0, 1: 1, 2: 2, ..., +2 more}"


def test_containers_deeper_than_max_depth_become_counted_markers() -> None:
    serializer = Serializer(max_depth=1)
    assert serializer([[1, [2, 3]]]) == "[[1, [... 2 items]]]"
    assert serializer({"a": {"b": {"c": 1}}}) == "{'a': {'b': {... 1 item}}}"
    assert Serializer(max_depth=0)([(1,), []]) == "[(... 1 item), []]"


def test_a_huge_list_is_bounded_by_length_before_item_count() -> None:
    serializer = Serializer(max_length=60, max_items=1000)
    text = serializer(["abcdefghij"] * 1000)
    assert len(text) <= 60
    assert text.endswith("more]")


def test_a_container_that_contains_itself_is_marked_as_a_cycle() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    mapping: dict[str, Any] = {}
    mapping["self"] = mapping
    assert Serializer(max_depth=5)(loop) == "[1, <cycle: list>]"
    assert Serializer(max_depth=5)(mapping) == "{'self': <cycle: dict>}"


def test_deep_nesting_is_bounded_without_recursing_through_it() -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    assert Serializer(max_depth=3)(deep) == "[[[[[... 1 item]]]]]"


# --- user code is never run by default --------------------------------------------------------


TRAPPED: list[str] = []  # every hook of Trap and its metaclass that ran


class Meta(type):
    """A metaclass that records any use of the class object's own hooks."""

    def __getattribute__(cls, name: str) -> Any:
        TRAPPED.append(f"meta getattribute {name}")
        return super().__getattribute__(name)

    def __hash__(cls) -> int:
        TRAPPED.append("meta hash")
        return 1

    def __eq__(cls, other: object) -> bool:
        TRAPPED.append("meta eq")
        return cls is other

    def __repr__(cls) -> str:
        TRAPPED.append("meta repr")
        return "Meta"


def _trap(what: str) -> Any:
    """A method that records that it ran, then fails."""

    def hook(self: Any, *args: Any) -> Any:
        TRAPPED.append(what)
        raise RuntimeError(what)

    return hook


class Trap(metaclass=Meta):
    """Every hook a careless serializer might call records the call."""

    def __init__(self) -> None:
        object.__setattr__(self, "amount", 3)
        object.__setattr__(self, "label", "x")

    __repr__ = _trap("repr")
    __str__ = _trap("str")
    __eq__ = _trap("eq")
    __hash__ = _trap("hash")  # type: ignore[assignment]
    __len__ = _trap("len")
    __iter__ = _trap("iter")
    __bool__ = _trap("bool")
    __getattr__ = _trap("getattr")
    __format__ = _trap("format")
    __sizeof__ = _trap("sizeof")
    __reduce__ = _trap("reduce")

    def __getattribute__(self, name: str) -> Any:
        TRAPPED.append(f"getattribute {name}")
        raise RuntimeError(name)

    @property
    def total(self) -> int:
        TRAPPED.append("property")
        return 0

    @property
    def __class__(self) -> type:  # type: ignore[override]
        TRAPPED.append("__class__")
        return int


@pytest.fixture
def no_calls() -> Any:
    TRAPPED.clear()
    yield
    assert TRAPPED == []


def test_an_object_is_shown_by_its_fields_without_running_any_of_its_code(no_calls: None) -> None:
    serializer = Serializer()
    assert serializer(Trap()) == "Trap(amount=3, label='x')"
    assert (
        serializer([Trap(), {"k": Trap()}]) == "[Trap(amount=3, label='x'), {'k': Trap(amount=3, label='x')}]"
    )
    assert serializer.type_name(Trap()) == f"{HERE}.Trap"


def test_a_class_with_a_hostile_metaclass_is_named_without_running_it(no_calls: None) -> None:
    assert Serializer()(Trap) == f"<class {HERE}.Trap>"
    assert Serializer().type_name(Trap) == f"{HERE}.Meta"


def test_a_slow_repr_is_never_waited_for_by_default() -> None:
    import time

    class Slow:
        def __repr__(self) -> str:
            time.sleep(5)
            return "slow"

    started = time.perf_counter()
    assert Serializer()(Slow()) == "<Slow object>"
    assert time.perf_counter() - started < 1


def test_a_dict_subclass_is_read_with_the_builtin_methods_not_its_overrides() -> None:
    calls: list[str] = []

    class Lazy(dict):
        def items(self) -> Any:
            calls.append("items")
            return []

        def __iter__(self) -> Any:
            calls.append("iter")
            return iter(())

        def __len__(self) -> int:
            calls.append("len")
            return 0

        def __getitem__(self, key: object) -> Any:
            calls.append("getitem")
            return None

        def __repr__(self) -> str:
            calls.append("repr")
            return "Lazy"

    assert Serializer()(Lazy(a=1)) == "Lazy({'a': 1})"
    assert calls == []


def test_list_tuple_and_str_subclasses_show_their_class_and_builtin_contents() -> None:
    calls: list[str] = []

    class Rows(list):
        def __iter__(self) -> Any:
            calls.append("iter")
            return iter(())

        def __getitem__(self, index: object) -> Any:
            calls.append("getitem")
            return None

    class Pair(tuple):
        def __len__(self) -> int:
            calls.append("len")
            return 0

    class Name(str):
        def __repr__(self) -> str:
            calls.append("repr")
            return "Name"

    serializer = Serializer()
    assert serializer(Rows([1, 2])) == "Rows([1, 2])"
    assert serializer(Pair((1,))) == "Pair((1,))"
    assert serializer(Name("ada")) == "Name('ada')"
    assert serializer(collections.Counter("aab")) == "Counter({'a': 2, 'b': 1})"
    assert calls == []


def test_slots_are_read_through_their_descriptors_even_when_a_subclass_shadows_them() -> None:
    calls: list[str] = []

    class Point:
        __slots__ = ("x", "y")

        def __init__(self) -> None:
            self.x = 1

    class Shadow(Point):
        __slots__ = ()

        def __init__(self) -> None:
            Point.x.__set__(self, 1)  # type: ignore[attr-defined]

        @property  # type: ignore[misc]
        def x(self) -> int:
            calls.append("property")
            return 0

    class Mixed(Point):
        def __init__(self) -> None:
            super().__init__()
            self.y = 2
            self.z = 3

    serializer = Serializer()
    assert serializer(Point()) == "Point(x=1)"  # the unset slot y is left out
    assert serializer(Shadow()) == "Shadow(x=1)"
    assert serializer(Mixed()) == "Mixed(x=1, y=2, z=3)"
    assert calls == []


def test_a_property_shadowing_dict_is_not_called() -> None:
    calls: list[str] = []

    class Base:
        pass

    class Hidden(Base):
        @property  # type: ignore[misc]
        def __dict__(self) -> Any:
            calls.append("__dict__")
            raise RuntimeError

    class Opaque:
        @property  # type: ignore[misc]
        def __dict__(self) -> Any:
            calls.append("__dict__")
            raise RuntimeError

    hidden = Hidden()
    hidden.value = 5  # type: ignore[attr-defined]
    assert Serializer()(hidden) == "Hidden(value=5)"  # read through Base's own descriptor
    assert Serializer()(Opaque()) == "<Opaque object>"  # no safe way to its dict: no fields
    assert calls == []


def test_a_proxy_whose_dict_getter_forwards_to_the_wrapped_object_is_not_read() -> None:
    import wrapt

    calls: list[str] = []

    class Wrapped:
        def __init__(self) -> None:
            self.x = 1

        def __getattribute__(self, name: str) -> Any:
            calls.append(name)
            return object.__getattribute__(self, name)

    class Proxy(wrapt.ObjectProxy):
        pass

    proxy = Proxy(Wrapped())
    calls.clear()
    assert Serializer()(proxy) == "<Proxy object>"
    assert calls == []


def test_interpreter_struct_fields_are_shown_as_fields() -> None:
    import functools

    assert Serializer()(types.SimpleNamespace(a=1)) == "SimpleNamespace(a=1)"
    assert Serializer()(functools.partial(len, "ab")) == (
        "partial(func=<built-in function len>, args=('ab',), keywords={})"
    )


def test_objects_deeper_than_max_depth_or_without_fields_are_marked() -> None:
    class Node:
        def __init__(self, child: object) -> None:
            self.child = child

    assert Serializer(max_depth=1)(Node(Node(Node(None)))) == "Node(child=Node(child=Node(...)))"
    assert Serializer()(object()) == "<object object>"


def test_an_object_that_refers_to_itself_is_marked_as_a_cycle() -> None:
    class Node:
        pass

    node = Node()
    node.me = node  # type: ignore[attr-defined]
    assert Serializer()(node) == "Node(me=<cycle: Node>)"


def test_object_fields_beyond_max_items_are_counted() -> None:
    class Wide:
        def __init__(self) -> None:
            for i in range(5):
                setattr(self, f"f{i}", i)

    assert Serializer(max_items=2)(Wide()) == "Wide(f0=0, f1=1, ..., +3 more)"


def test_exceptions_show_their_arguments_without_calling_their_methods() -> None:
    calls: list[str] = []

    class Refused(Exception):
        def __str__(self) -> str:
            calls.append("str")
            return "x"

        @property  # type: ignore[override]
        def args(self) -> Any:
            calls.append("args")
            return ("fake",)

    serializer = Serializer()
    assert serializer(ValueError("bad input")) == "ValueError('bad input')"
    assert serializer(KeyError("k", 2)) == "KeyError('k', 2)"
    assert serializer(Refused("real")) == "Refused('real')"
    assert calls == []


def test_functions_methods_classes_and_modules_are_named_briefly() -> None:
    def helper() -> None:
        pass

    class Shop:
        def buy(self) -> None:
            pass

    serializer = Serializer()
    assert serializer(helper) == f"<function {HERE}.{helper.__qualname__}>"
    assert serializer(Shop().buy) == f"<bound method {HERE}.{Shop.buy.__qualname__}>"
    assert serializer(Shop) == f"<class {HERE}.{Shop.__qualname__}>"
    assert serializer(int) == "<class int>"
    assert serializer(collections) == "<module collections>"
    assert serializer(len) == "<built-in function len>"


def test_enum_members_and_namedtuples_read_like_code() -> None:
    class Color(enum.Enum):
        RED = 1

    class Level(enum.IntEnum):
        HIGH = 3

    Point = collections.namedtuple("Point", "x y")
    serializer = Serializer()
    assert serializer(Color.RED) == "Color.RED"
    assert serializer(Level.HIGH) == "Level.HIGH"
    assert serializer(Point(1, 2)) == "Point(x=1, y=2)"


def test_a_datetime_with_a_python_tzinfo_does_not_call_the_tzinfo() -> None:
    calls: list[str] = []

    class Zone(datetime.tzinfo):
        def utcoffset(self, dt: object) -> datetime.timedelta:
            calls.append("utcoffset")
            return datetime.timedelta(0)

        def __repr__(self) -> str:
            calls.append("repr")
            return "Zone"

    stamp = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=Zone())
    text = Serializer()(stamp)
    assert text == "datetime.datetime(2024, 5, 1, 12, 30, tzinfo=<Zone object>)"
    assert calls == []
    utc = datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc)
    assert Serializer()(utc) == repr(utc)


def test_type_name_is_qualified_for_everything_but_builtins() -> None:
    class Order:
        pass

    serializer = Serializer()
    assert serializer.type_name(1) == "int"
    assert serializer.type_name({}) == "dict"
    assert serializer.type_name(Order()) == f"{HERE}.{Order.__qualname__}"
    assert serializer.type_name(collections.OrderedDict()) == "collections.OrderedDict"


def test_a_failure_inside_the_serializer_becomes_a_marker_for_that_value_only() -> None:
    huge = range(10**5000)  # its repr needs a 5000-digit int, which Python refuses to make
    assert Serializer()(huge) == "<unrepresentable: range>"
    assert Serializer()([1, huge]) == "[1, <unrepresentable: range>]"


# --- opted-in user code -----------------------------------------------------------------------


class Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents

    def __repr__(self) -> str:
        return f"${self.cents / 100:.2f}"


def test_user_repr_is_used_only_when_enabled() -> None:
    assert Serializer()(Money(250)) == "Money(cents=250)"
    assert Serializer(user_repr=True)(Money(250)) == "$2.50"
    assert Serializer(user_repr=True)({"price": Money(250)}) == "{'price': $2.50}"


def test_a_raising_user_repr_is_reported_not_raised() -> None:
    class Broken:
        def __repr__(self) -> str:
            raise ValueError("no repr today")

    assert Serializer(user_repr=True)(Broken()) == "<repr raised ValueError: no repr today>"


def test_a_user_repr_that_serializes_itself_does_not_recurse() -> None:
    serializer = Serializer(user_repr=True)

    class Traced:
        def __init__(self) -> None:
            self.id = 7

        def __repr__(self) -> str:  # what a traced __repr__ does: record self, then answer
            return f"Traced[{serializer(self)}]"

    assert serializer(Traced()) == "Traced[Traced(id=7)]"


def test_a_huge_user_repr_is_still_bounded() -> None:
    class Verbose:
        def __repr__(self) -> str:
            return "v" * 100_000

    text = Serializer(max_length=100, user_repr=True)(Verbose())
    assert 95 <= len(text) <= 100
    assert text.endswith("chars)")


def test_user_repr_leaves_builtin_containers_to_the_safe_walk() -> None:
    calls: list[str] = []

    class Item:
        def __repr__(self) -> str:
            calls.append("repr")
            return "item"

    assert Serializer(user_repr=True, max_items=2)([Item()] * 10) == "[item, item, ..., +8 more]"
    assert calls == ["repr", "repr"]


def test_the_otel_scope_repr_protocol_is_honoured_without_user_repr() -> None:
    class Card:
        def __init__(self) -> None:
            self.number = "4111111111111111"

        def __otel_scope_repr__(self) -> str:
            return "Card(****1111)"

    class Failing:
        def __otel_scope_repr__(self) -> str:
            raise KeyError("gone")

    assert Serializer()(Card()) == "Card(****1111)"
    assert Serializer()(Failing()) == "<__otel_scope_repr__ raised KeyError: gone>"


def test_the_protocol_is_looked_up_on_the_class_not_the_instance() -> None:
    class Plain:
        pass

    plain = Plain()
    plain.__otel_scope_repr__ = lambda: "instance hook"  # type: ignore[attr-defined]
    assert Serializer()(plain).startswith("Plain(__otel_scope_repr__=<function ")


def test_settings_limits_reach_the_serializer() -> None:
    serializer = Serializer.from_settings(
        Settings(max_value_length=40, max_items=2, max_depth=0, user_repr=True)
    )
    assert serializer([[1], 2, 3]) == "[[... 1 item], 2, ..., +1 more]"
    assert 35 <= len(serializer("z" * 100)) <= 40
    assert serializer(Money(1)) == "$0.01"


# --- properties ---------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.complex_numbers()
    | st.text()
    | st.binary()
    | st.builds(pow, st.just(10), st.integers(1000, 6000))  # beyond Python's int-to-str limit
)
names = st.text(alphabet=string.ascii_letters + "_-", min_size=1, max_size=30)
builtin_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=30)
        | st.tuples(children, children)
        | st.dictionaries(names | st.integers(), children, max_size=30)
        | st.frozensets(st.integers() | st.text(max_size=5), max_size=30)
        | st.builds(collections.deque, st.lists(children, max_size=5))
    ),
    max_leaves=200,
)


@settings(max_examples=examples(300), deadline=None)
@given(value=builtin_values, max_length=st.integers(20, 600), max_depth=st.integers(0, 4))
def test_any_builtin_value_serializes_within_max_length(
    value: object, max_length: int, max_depth: int
) -> None:
    text = Serializer(max_length=max_length, max_depth=max_depth, max_items=7)(value)
    assert type(text) is str
    assert len(text) <= max_length


def _build_object(attributes: dict[str, object], slotted: bool) -> object:
    if slotted:
        cls = types.new_class("Slotted", exec_body=lambda ns: ns.update(__slots__=tuple(attributes)))
    else:
        cls = types.new_class("Dynamic")
    instance = cls()
    for name, value in attributes.items():
        setattr(instance, name, value)
    return instance


identifiers = st.from_regex(r"\A[a-z_][a-z0-9_]{0,15}\Z").filter(lambda n: not n.startswith("__"))
objects = st.recursive(
    builtin_values,
    lambda children: st.builds(
        _build_object, st.dictionaries(identifiers, children, max_size=6), st.booleans()
    ),
    max_leaves=40,
)


@settings(max_examples=examples(200), deadline=None)
@given(value=objects, max_length=st.integers(20, 400))
def test_any_object_built_from_arbitrary_attributes_serializes_within_max_length(
    value: object, max_length: int
) -> None:
    serializer = Serializer(max_length=max_length)
    text = serializer(value)
    assert len(text) <= max_length
    assert "<unrepresentable" not in text
    assert type(serializer.type_name(value)) is str


def test_the_default_serializer_never_raises_on_interpreter_objects() -> None:
    serializer = Serializer()
    frame = sys._getframe()
    for value in (frame, frame.f_code, sys, sys.modules, globals(), (x for x in ()), memoryview(b"ab"), ...):
        text = serializer(value)
        assert 0 < len(text) <= 512


def test_standard_library_plumbing_is_shown_by_type_not_by_fields() -> None:
    import queue
    import threading

    class Worker:
        def __init__(self) -> None:
            self.inbox: queue.Queue = queue.Queue()
            self.lock = threading.Lock()
            self.done = 0

    assert Serializer()(Worker()).endswith(
        "Worker(inbox=<queue.Queue object>, lock=<_thread.lock object>, done=0)"
    )


def test_decimals_and_datetimes_in_a_zoneinfo_zone_render_as_their_own_repr() -> None:
    """Both types are known safe only once their module is loaded (the serializer does not
    import them): their interpreter-made repr is used, not the generic object rendering."""
    serializer = Serializer()
    assert serializer(decimal.Decimal("1.50")) == "Decimal('1.50')"
    try:
        zone = zoneinfo.ZoneInfo("Europe/Paris")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no time zone database on this machine")
    when = datetime.datetime(2026, 12, 7, 15, 0, tzinfo=zone)
    assert serializer(when) == repr(when)

    class Price(decimal.Decimal):  # a subclass may have its own repr: not trusted as safe
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert serializer(Price("2")) != "Decimal('2')"
