"""Run the shop: receive a few orders, check stock in another thread, print the outcome.

    opentelemetry-instrument --scope-mode hybrid python app.py

(targets come from ``[tool.otel-scope]`` in this folder's pyproject.toml)."""

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
        print("BUG: more widgets promised than exist. Look at check_stock's locals in the trace.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
