"""The order receiver: validates incoming orders and hands them to the inventory checker."""

from __future__ import annotations

import queue
from dataclasses import dataclass


@dataclass
class Order:
    order_id: int
    item: str
    quantity: int


class OrderReceiver:
    """Accepts raw orders, normalises them, and sends them over the queue."""

    def __init__(self, outbox: queue.Queue) -> None:
        self.outbox = outbox
        self.received = 0

    def receive(self, raw: dict) -> Order:
        order = Order(int(raw["id"]), raw["item"].strip().lower(), int(raw.get("qty", 1)))
        if order.quantity <= 0:
            raise ValueError(f"order {order.order_id}: quantity must be positive")
        self.received += 1
        self.outbox.put(order)
        return order

    def close(self) -> None:
        self.outbox.put(None)
