"""Processes orders until a stop file appears (or, with --count N, exactly N orders).

Started with no otel-scope targets: tests add and remove them from outside while it runs, and its
output must stay exactly what an untraced run prints.
"""

import sys
import time
from pathlib import Path

import liveshop


def main():
    count = int(sys.argv[2]) if sys.argv[1] == "--count" else None
    stop = None if count is not None else Path(sys.argv[1])
    print("ready", flush=True)
    i = 0
    while (i < count) if count is not None else not stop.exists():
        try:
            print(i, liveshop.process(i), flush=True)
        except ValueError as exc:
            print(i, "failed:", exc, flush=True)
        i += 1
        if count is None:
            time.sleep(0.01)
    return 0


if __name__ == "__main__":
    sys.exit(main())
