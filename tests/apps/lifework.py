"""Functions the lifecycle tests trace (``--scope-targets lifework:*``): small, pure, fast."""


def job(n):
    return leaf(n) * 2


def leaf(n):
    return n + 1


def sigterm_is_default(_):
    """Whether SIGTERM kills this process at once (no Python-level handler installed)."""
    import signal

    return signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def parent(count):
    total = 0
    for i in range(count):
        total += leaf(i)
    return total


def stdlib_round_trip(count):
    """Uses the libraries otel-scope's own export path uses, so targeting them must not loop."""
    import json
    import logging
    import os
    import queue
    import sqlite3
    import threading

    box = queue.Queue()
    worker = threading.Thread(target=lambda: box.put(json.dumps({"pid": os.getpid()})))
    worker.start()
    worker.join()
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (v TEXT)")
    for i in range(count):
        db.execute("INSERT INTO t VALUES (?)", (json.dumps({"i": i}),))
    logging.getLogger("lifework").warning("stored %d rows", count)
    return json.loads(box.get())["pid"] == os.getpid(), db.execute("SELECT count(*) FROM t").fetchone()[0]
