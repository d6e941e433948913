"""An order service in the shape the big-trace timeline is about: one hot function called
thousands of times from a loop (a few of the calls raise), a receiver whose repr is long, and a
worker thread still inside a traced call when the program exits."""

from __future__ import annotations

import threading

STOCK = {f"item{i}": 5 for i in range(20)}


class Environment:
    """Configuration passed to every call, with a long repr (the issue's 500-character self=)."""

    def __init__(self) -> None:
        self.options = {f"option_{i}": i * 7 for i in range(40)}

    def __repr__(self) -> str:
        return "Environment(" + ", ".join(f"{k}={v}" for k, v in self.options.items()) + ")"

    def check_stock(self, item: str, qty: int) -> int:
        remaining = STOCK[item] - qty
        if remaining < 0:
            raise ValueError(f"out of stock: {item}")
        return remaining


def process(env: Environment, orders: list[tuple[str, int]]) -> int:
    failed = 0
    for item, qty in orders:
        try:
            env.check_stock(item, qty)
        except ValueError:
            failed += 1
    return failed


def poll(stop: threading.Event, started: threading.Event) -> None:
    """A worker's loop that never returns before the program ends: its span is never exported.

    It ticks a burst of 12 first, before the main thread starts (a run of orphans the timeline
    folds, however fast the machine), then every 10 ms.
    """
    for _ in range(12):
        tick()
    started.set()
    while True:
        tick()
        if stop.wait(0.01):
            stop.clear()


def tick() -> str:
    return "ok"
