"""Leaves with ``os._exit`` inside a traced call, as argv[1] says: ``main`` (this process),
``fork`` (a forked child, its parent waiting for it), ``asyncio`` (from a coroutine); or by
SIGTERM inside one (``sigterm``); holding a lazy object that prints when evaluated (``lazy``)."""

import asyncio
import os
import sys

import leavework

how = sys.argv[1]
if how == "main":
    leavework.leaves(3)
elif how == "fork":
    pid = os.fork()
    if pid == 0:
        leavework.leaves(0)
    _, status = os.waitpid(pid, 0)
    print("child exited", os.waitstatus_to_exitcode(status))
elif how == "asyncio":
    asyncio.run(leavework.leaves_from_a_coroutine(4))
elif how == "sigterm":
    leavework.killed()
elif how == "lazy":
    from django.utils.functional import SimpleLazyObject

    leavework.leaves_holding(SimpleLazyObject(lambda: print("evaluated", flush=True)))
