"""A parent that forks one worker (as pre-forking servers do); both work until a stop file appears."""

import os
import sys
import time
from pathlib import Path

import liveshop


def work(stop, name):
    i = 0
    while not stop.exists():
        try:
            liveshop.process(i)
        except ValueError:
            pass
        i += 1
        time.sleep(0.01)
    print(name, "done", flush=True)


def main():
    stop = Path(sys.argv[1])
    child = os.fork()
    if child == 0:
        print("child", os.getpid(), flush=True)
        work(stop, "child")
        os._exit(0)
    print("ready", flush=True)
    os.waitpid(child, 0)
    print("child exited", flush=True)
    while not (stop.parent / "stop-parent").exists():
        time.sleep(0.01)
    return 0


if __name__ == "__main__":
    sys.exit(main())
