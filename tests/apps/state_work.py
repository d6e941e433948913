"""Objects whose methods change their own state, for the state-capture tests.

Every way user code could run while otel-scope reads an object (a property, ``__getattr__``, a
``__getattribute__``, a ``__repr__``) appends to ``USER_CODE_RAN``; the app prints it, and it must
stay empty when traced as when not.
"""

import asyncio

USER_CODE_RAN = []


class Inventory:
    def __init__(self, stock):
        self.stock = dict(stock)
        self.reserved = {}
        self.count = 0
        self.label = "main"
        self.password = "hunter2"

    @property
    def total(self):
        USER_CODE_RAN.append("property")
        return sum(self.stock.values())

    def __getattr__(self, name):
        USER_CODE_RAN.append(f"__getattr__ {name}")
        raise AttributeError(name)

    def __repr__(self):
        USER_CODE_RAN.append("__repr__")
        return "Inventory(...)"

    def reserve(self, item, n):
        self.reserved[item] = self.reserved.get(item, 0) + n  # mutated in place
        self.count += 1
        return self.reserved[item]

    def rename(self, label):
        self.label = label

    def peek(self, item):
        return self.stock.get(item, 0)

    def rotate_password(self, new):
        self.password = new

    def fail(self):
        self.count += 1
        raise ValueError("out of stock")

    def add_and_drop(self):
        self.extra = 1
        del self.label


class Slotted:
    __slots__ = ("items", "x")

    def __init__(self):
        self.x = 1
        self.items = []

    def push(self, value):
        self.items.append(value)
        self.x += 1


class Counter:
    def __init__(self):
        self.n = 0

    async def incr(self):
        await asyncio.sleep(0)
        self.n += 1
        return self.n
