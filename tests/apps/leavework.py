"""Calls the process leaves inside, with ``os._exit`` (see tests/test_unfinished_calls.py): a
plain call that has made a child call and set a local, and a coroutine suspended in a task
while another one leaves; and a call SIGTERM ends."""

import asyncio
import os
import signal
import time


def child() -> int:
    return 1


def leaves(status: int) -> None:
    done = child()
    print("leaving", done, flush=True)
    os._exit(status)


async def waits(started: asyncio.Event) -> None:
    started.set()
    await asyncio.Event().wait()


async def leaves_from_a_coroutine(status: int) -> None:
    started = asyncio.Event()
    task = asyncio.create_task(waits(started))
    await started.wait()
    print("leaving", task.done(), flush=True)
    os._exit(status)


def leaves_holding(value: object) -> None:
    os._exit(5)  # with ``value`` among the frame's locals


def killed() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)  # SIGTERM ends the process in here
