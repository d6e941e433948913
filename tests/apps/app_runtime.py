"""A small program whose output must be identical with and without otel-scope."""

import asyncio
import random
import sys

from svc import orders
from svc.orders import Order, validate


def main():
    a = Order(1, [10, 20])
    print("total", a.total())
    print("empty", Order.empty(2).size, Order.currency())
    print("valid", validate(a))
    try:
        validate(Order.empty(3))
    except ValueError as exc:
        print("caught", exc)
    print("batches", [len(b) for b in orders.batches(list(range(5)), 2)])
    print(asyncio.run(orders.ship(a)))
    print("thread", orders.in_thread(a))
    random.seed(7)  # traced calls between seeding and drawing must not shift the sequence
    validate(a)
    print("random", random.random())
    print("to stderr", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main())
