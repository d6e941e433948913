"""A service module for subprocess tests: one of each callable kind."""

import asyncio
import threading


class Order:
    def __init__(self, order_id, items):
        self.order_id = order_id
        self.items = items

    def total(self, tax=0.1):
        return round(sum(self.items) * (1 + tax), 2)

    @classmethod
    def empty(cls, order_id):
        return cls(order_id, [])

    @staticmethod
    def currency():
        return "EUR"

    @property
    def size(self):
        return len(self.items)


def validate(order):
    if not order.items:
        raise ValueError(f"order {order.order_id} is empty")
    return True


def batches(orders, size):
    for i in range(0, len(orders), size):
        yield orders[i : i + size]


async def ship(order):
    await asyncio.sleep(0)
    return f"shipped {order.order_id}"


def in_thread(order):
    result = []
    t = threading.Thread(target=lambda: result.append(order.total()))
    t.start()
    t.join()
    return result[0]
