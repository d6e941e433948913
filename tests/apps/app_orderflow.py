"""1,700 stock checks (the last 3 raise) in five batches of one session, and a daemon worker
still polling at exit."""

import threading

import orderflow

env = orderflow.Environment()
orders = [(f"item{i % 20}", 1) for i in range(1697)] + [("item3", 9), ("item4", 7), ("item5", 6)]
started = threading.Event()
threading.Thread(target=orderflow.poll, args=(threading.Event(), started), daemon=True).start()
started.wait(10)
print("failed", sum(orderflow.process(env, orders[i : i + 340]) for i in range(0, 1700, 340)))
