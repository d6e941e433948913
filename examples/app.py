"""Run the shop: receive a few orders, check stock in another thread, print the outcome.

    opentelemetry-instrument --scope-mode hybrid python app.py
    otel-scope history --last                      # every call, message, local and state change
    otel-scope history --last --follow <message>   # one order: receiver -> queue -> checker

(targets come from ``[tool.otel-scope]`` in this folder's pyproject.toml). Each order the receiver
puts on the queue is a message; the checker's ``check_stock`` receives it, and its locals and the
change it makes to ``reserved`` show where the count goes wrong."""

from __future__ import annotations

import queue
import threading

from shop.inventory import InventoryChecker
from shop.orders import OrderReceiver

ORDERS = [
    {"id": 1, "item": "Widget", "qty": 3},
    {"id": 2, "item": "gadget", "qty": 1},
    {"id": 3, "item": "widget ", "qty": 2},
    {"id": 4, "item": "widget", "qty": 3},
]


def main() -> int:
    channel: queue.Queue = queue.Queue()
    checker = InventoryChecker({"widget": 5, "gadget": 2})
    worker = threading.Thread(target=checker.run, args=(channel,), name="inventory")
    worker.start()
    receiver = OrderReceiver(channel)
    for raw in ORDERS:
        receiver.receive(raw)
    receiver.close()
    worker.join()
    wanted = sum(o["qty"] for o in ORDERS if o["item"].strip().lower() == "widget")
    promised = sum(
        o["qty"]
        for o, r in zip(ORDERS, checker.results, strict=False)
        if r["status"] == "reserved" and o["item"].strip().lower() == "widget"
    )
    for result in checker.results:
        print(result)
    print(f"widgets on hand: 5, ordered: {wanted}, promised to customers: {promised}")
    if promised > 5:
        print(
            "BUG: more widgets promised than exist. Follow an order's message into check_stock: "
            "its locals and its change to `reserved`."
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
