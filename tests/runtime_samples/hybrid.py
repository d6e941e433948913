"""Functions traced by both mechanisms at once in tests/test_hybrid_context.py."""

import asyncio


def work(n):
    total = 0
    for i in range(n):
        total += i
    return total


async def awork(n):
    seen = 0
    for i in range(n):
        await asyncio.sleep(0)
        seen = i + 1
    return seen
