"""Coroutines that asyncio cancels, as programs use them (see tests/test_cancellation.py):
``task.cancel()`` on a task still waiting, and a deadline (``asyncio.timeout``, or
``asyncio.wait_for`` before Python 3.11) running out while the coroutine awaits, an async
generator whose consumer is cancelled; and a missed deadline that fails its caller."""

import asyncio


async def waits_forever(started: asyncio.Event) -> None:
    started.set()
    await asyncio.Event().wait()


async def cancelled_by_its_caller() -> str:
    started = asyncio.Event()
    task = asyncio.create_task(waits_forever(started))
    await started.wait()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        return "cancelled"
    return "finished"


async def past_its_deadline() -> None:
    await waits_forever(asyncio.Event())


async def with_a_deadline() -> str:
    timeout = getattr(asyncio, "timeout", None)
    try:
        if timeout is not None:
            async with timeout(0.01):
                await past_its_deadline()
        else:
            await asyncio.wait_for(past_its_deadline(), 0.01)
    except asyncio.TimeoutError:  # TimeoutError from 3.11 on
        return "timed out"
    return "finished"


async def deadline_missed() -> None:
    await asyncio.wait_for(past_its_deadline(), 0.01)  # its TimeoutError leaves this call


async def ticks():
    while True:
        yield
        await asyncio.sleep(0)


async def counts_ticks(counted: list[int]) -> None:
    async for _ in ticks():
        counted.append(1)


async def main() -> None:
    print(await cancelled_by_its_caller(), await with_a_deadline())
    try:
        await deadline_missed()
    except asyncio.TimeoutError:  # TimeoutError from 3.11 on
        print("deadline missed")
    counted: list[int] = []
    task = asyncio.create_task(counts_ticks(counted))
    while len(counted) < 3:
        await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    print("ticks cancelled", task.cancelled())
