"""State capture in-process: what counts as a change, what is never run, and the wrapper's paths."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from otel_scope.capture import Serializer
from otel_scope.config import parse_pattern
from otel_scope.engine import Engine
from otel_scope.runtime import state
from otel_scope.targets.planner import Request
from sdk import MemorySpans

RAN: list[str] = []


class Loud(type):
    """A metaclass that would record any hashing, comparison or attribute lookup on its classes."""

    def __hash__(cls) -> int:
        RAN.append("metaclass __hash__")
        return 1

    def __eq__(cls, other: object) -> bool:
        RAN.append("metaclass __eq__")
        return False

    def __getattribute__(cls, name: str) -> object:
        if name not in ("__name__", "__qualname__", "__module__", "__mro__", "__dict__"):
            RAN.append(f"metaclass getattr {name}")
        return super().__getattribute__(name)


class Guarded(metaclass=Loud):
    def __init__(self) -> None:
        self.items: list[int] = []
        self.count = 0

    @property
    def doubled(self) -> int:
        RAN.append("property")
        return self.count * 2

    def __getattr__(self, name: str) -> object:
        RAN.append(f"__getattr__ {name}")
        raise AttributeError(name)

    def __getattribute__(self, name: str) -> object:
        if name not in ("items", "count", "__dict__", "__class__"):
            RAN.append(f"__getattribute__ {name}")
        return object.__getattribute__(self, name)


class Mixed:
    __slots__ = ("__dict__", "a", "b")

    def __init__(self) -> None:
        self.a = 1  # b stays an empty slot
        self.extra = {"k": [1]}


class ShadowedDict:
    def __init__(self) -> None:
        self.value = 1

    @property  # type: ignore[misc]
    def __dict__(self) -> dict:
        RAN.append("__dict__ property")
        return {}


@pytest.fixture(autouse=True)
def _clear() -> Iterator[None]:
    RAN.clear()
    yield
    assert RAN == [], "otel-scope ran user code while reading state"


@pytest.fixture
def serializer() -> Serializer:
    return Serializer()


def _diff(obj: object, change, serializer: Serializer) -> list[tuple[str, str, str]]:
    before = state.snapshot(obj, serializer)
    assert before is not None
    change(obj)
    return state.changes(before, obj, serializer)


def test_a_container_mutated_in_place_is_a_change(serializer: Serializer) -> None:
    assert _diff(Guarded(), lambda o: o.items.append(3), serializer) == [("items", "[]", "[3]")]


def test_an_unchanged_object_and_an_equal_replacement_are_no_change(serializer: Serializer) -> None:
    assert _diff(Guarded(), lambda o: None, serializer) == []

    def replace(o: Guarded) -> None:
        o.items = []  # a new but equal list
        o.count = int("0")

    assert _diff(Guarded(), replace, serializer) == []


def test_nested_large_and_user_keyed_containers_are_compared_by_their_text(serializer: Serializer) -> None:
    class Holder:
        def __init__(self) -> None:
            self.nested = [[1], [2]]
            self.large = list(range(50))
            self.keyed = {(1, 2): 1}  # a key that is not a plain scalar

    def change(o: Holder) -> None:
        o.nested[0].append(9)
        o.large[0] = -1
        o.keyed[1, 2] = 2

    found = dict((name, (old, new)) for name, old, new in _diff(Holder(), change, serializer))
    assert found["nested"] == ("[[1], [2]]", "[[1, 9], [2]]")
    assert found["large"][0].startswith("[0, 1") and found["large"][1].startswith("[-1, 1")
    assert found["keyed"] == ("{(1, 2): 1}", "{(1, 2): 2}")


class LoudName(str):
    def __hash__(self) -> int:
        RAN.append("name __hash__")
        return str.__hash__(self)

    def __eq__(self, other: object) -> bool:
        RAN.append("name __eq__")
        return str.__eq__(self, other)


def test_attribute_names_that_are_not_plain_str_are_left_out(serializer: Serializer) -> None:
    obj = Guarded()
    vars(obj)[LoudName("odd")] = 1  # hashes the name here, in the test
    RAN.clear()

    def change(o: Guarded) -> None:
        o.count = 5

    assert _diff(obj, change, serializer) == [("count", "0", "5")]


def test_added_and_deleted_attributes_show_as_unset(serializer: Serializer) -> None:
    def change(o: Guarded) -> None:
        o.label = "x"
        del o.count

    assert sorted(_diff(Guarded(), change, serializer)) == [
        ("count", "0", state.UNSET),
        ("label", state.UNSET, "'x'"),
    ]


def test_slots_and_dict_are_both_read_and_an_empty_slot_is_unset(serializer: Serializer) -> None:
    def change(o: Mixed) -> None:
        o.b = 2
        o.extra["k"].append(2)

    assert sorted(_diff(Mixed(), change, serializer)) == [
        ("b", state.UNSET, "2"),
        ("extra", "{'k': [1]}", "{'k': [1, 2]}"),
    ]


def test_a_class_shadowing_dunder_dict_is_not_read_rather_than_run(serializer: Serializer) -> None:
    # Python then gives the class no "__dict__" descriptor of its own: the instance dict cannot be
    # reached without running the property, so it is not read (as in the serializer).
    def change(o: ShadowedDict) -> None:
        object.__setattr__(o, "value", 2)

    assert _diff(ShadowedDict(), change, serializer) == []


def test_an_object_without_attributes_has_nothing_to_compare(serializer: Serializer) -> None:
    assert state.changes(state.snapshot(42, serializer), 42, serializer) == []


@pytest.mark.parametrize("instance", [None, Guarded, int])
def test_only_instances_are_receivers(instance: object) -> None:
    assert state.receiver_of(instance) is None


# --- through the runtime wrapper --------------------------------------------------------------
class Account:
    rate = 2

    def __init__(self, balance: int) -> None:
        self.balance = balance
        self.history: list[int] = []
        self.api_token = "abc"

    def deposit(self, amount: int) -> int:
        self.balance += amount
        self.history.append(amount)
        return self.balance

    def look(self) -> int:
        return self.balance

    def rotate(self) -> None:
        self.api_token = "def"

    def overdraw(self, amount: int) -> None:
        self.balance -= amount
        raise ValueError("overdrawn")

    async def settle(self) -> None:
        await asyncio.sleep(0)
        self.history.clear()

    @classmethod
    def make(cls) -> Account:
        return cls(0)

    @staticmethod
    def fee(amount: int) -> int:
        return amount // 10


def _changes(memory: MemorySpans, suffix: str) -> list[dict[str, str]]:
    (span,) = memory.named(suffix)
    return [
        {
            k.removeprefix("otel_scope.state."): v
            for k, v in e.attributes.items()
            if k.startswith("otel_scope.state.")
        }
        for e in span.events
        if e.name == "otel_scope.state"
    ]


def test_state_targets_record_changes_on_the_call_span(memory: MemorySpans, runtime_engine: Engine) -> None:
    runtime_engine.add(Request(parse_pattern(f"{__name__}:Account.*"), state=True))
    account = Account(10)
    assert account.deposit(5) == 15
    assert account.look() == 15
    account.rotate()
    with pytest.raises(ValueError, match="overdrawn"):
        account.overdraw(20)
    asyncio.run(account.settle())
    assert Account.make().balance == 0 and Account.fee(50) == 5

    assert _changes(memory, "Account.deposit") == [
        {"attribute": "balance", "before": "10", "after": "15"},
        {"attribute": "history", "before": "[]", "after": "[5]"},
    ]
    assert _changes(memory, "Account.look") == []
    assert _changes(memory, "Account.rotate") == [
        {"attribute": "api_token", "before": "[redacted]", "after": "[redacted]"}
    ]
    assert _changes(memory, "Account.overdraw") == [{"attribute": "balance", "before": "15", "after": "-5"}]
    (overdraw,) = memory.named("Account.overdraw")
    assert [e.name for e in overdraw.events][-1] == "exception"
    assert _changes(memory, "Account.settle") == [{"attribute": "history", "before": "[5]", "after": "[]"}]
    assert _changes(memory, "Account.make") == [] and _changes(memory, "Account.fee") == []
    (deposit,) = memory.named("Account.deposit")
    assert deposit.attributes["otel_scope.return"] == "15"  # the call is otherwise traced as usual


def test_runtime_targets_without_state_record_no_state(memory: MemorySpans, runtime_engine: Engine) -> None:
    runtime_engine.add(Request(parse_pattern(f"{__name__}:Account.deposit")))
    Account(1).deposit(1)
    assert _changes(memory, "Account.deposit") == []
