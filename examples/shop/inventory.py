"""The inventory checker: reserves stock for each order it receives from the queue."""

from __future__ import annotations

import queue

from shop.orders import Order


class InventoryChecker:
    """Keeps stock on hand and what is already reserved, per item."""

    def __init__(self, stock: dict[str, int]) -> None:
        self.stock = dict(stock)
        self.reserved: dict[str, int] = {}
        self.results: list[dict] = []

    def check_stock(self, order: Order) -> dict:
        on_hand = self.stock.get(order.item, 0)
        already_reserved = self.reserved.get(order.item, 0)
        available = on_hand - already_reserved
        if available < order.quantity:
            return {"order": order.order_id, "status": "backordered", "available": available}
        reserved = already_reserved + 1  # the bug: should add order.quantity
        self.reserved[order.item] = reserved
        return {"order": order.order_id, "status": "reserved", "left": available - order.quantity}

    def run(self, inbox: queue.Queue) -> None:
        while (order := inbox.get()) is not None:
            self.results.append(self.check_stock(order))
