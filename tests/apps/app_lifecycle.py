"""Real process shapes that once hung or lost spans at exit; argv[1] picks one, argv[2] a size.

forkpool / spawnpool / forkserverpool: ``multiprocessing`` Pool(2).map of a traced job.
sigterm: which processes keep SIGTERM's default action (the parent, and fork pool workers).
forkthread: a background thread traces while the main thread ``os.fork()``s children that
``sys.exit``. osexit: the same, but the children leave with ``os._exit``; forkexec: with
``os.execve``. exec: a traced call, then the program replaces itself with ``os.execve``.
daemon: daemon threads call a traced function in a loop until the interpreter exits. hot: one
traced call making argv[2] traced calls, as fast as Python can. stdlib: json, sqlite3, logging,
queue, threading and os calls the program makes itself (the same libraries the exporter and
store use).
"""

import multiprocessing
import os
import sys
import threading
import time

import lifework

how = sys.argv[1]
size = int(sys.argv[2]) if len(sys.argv) > 2 else 0


def _keep_tracing(stop=None):
    i = 0
    while stop is None or not stop.is_set():
        lifework.leaf(i)
        i += 1


def replace_with_plain_python():
    """``os.execve`` into a Python that otel-scope does not start in (no PYTHONPATH, no OTEL_*)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "OTEL_"))}
    os.execve(sys.executable, [sys.executable, "-c", "print('replaced', flush=True)"], env)


def forks(leave):
    stop = threading.Event()
    tracer = threading.Thread(target=_keep_tracing, args=(stop,), daemon=True)
    tracer.start()
    children = []
    for n in range(size or 5):
        pid = os.fork()
        if pid == 0:
            lifework.job(100 + n)
            if leave == "os._exit":
                os._exit(0)
            if leave == "exec":
                replace_with_plain_python()
            sys.exit(0)
        children.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
    stop.set()
    tracer.join()
    lifework.job(1)  # after the children: must still be inside the parent's session
    print("children", codes, flush=True)


if __name__ == "__main__":
    if how == "sigterm":  # who handles SIGTERM: the parent (its session) and a fork pool's workers
        import signal

        with multiprocessing.get_context("fork").Pool(2) as pool:
            workers = set(pool.map(lifework.sigterm_is_default, range(size or 4)))
        parent = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        print("parent default", parent, "workers default", workers)
    elif how.endswith("pool"):
        ctx = multiprocessing.get_context(how[: -len("pool")])
        with ctx.Pool(2) as pool:
            print("sum", sum(pool.map(lifework.job, range(size or 50))), flush=True)
    elif how == "forkthread":
        forks("sys.exit")
    elif how == "osexit":
        forks("os._exit")
    elif how == "forkexec":
        forks("exec")
    elif how == "exec":
        lifework.job(1)
        replace_with_plain_python()
    elif how == "daemon":
        for _ in range(4):
            threading.Thread(target=_keep_tracing, daemon=True).start()
        time.sleep(1.5)
        print("main done", flush=True)
    elif how == "hot":
        print("total", lifework.parent(size), flush=True)
    elif how == "stdlib":
        print(lifework.stdlib_round_trip(size or 20), flush=True)
    print("done at", time.time(), flush=True)  # what follows is otel-scope's exit work
