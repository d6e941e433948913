"""Untraced plumbing for the hand-off tests: consumer loops and child-process entry points."""

import msg_work


def run_and_store(fn, job, results):
    results.append(fn(job))


def consume(q, results):
    """The common consumer: take outside any traced call, then hand to a traced function."""
    while (job := q.get()) is not None:
        results.append(msg_work.handle(job))


def consume_one(q, results):
    """For queues that do not hand out in put order: exactly one item (a priority's is a pair)."""
    job = q.get()
    results.append(msg_work.handle(job[1] if isinstance(job, tuple) else job))


async def consume_async(q, results):
    while (job := await q.get()) is not None:
        results.append(await msg_work.handle_async(job))


def handle_in_child(job, out=None):
    result = msg_work.handle(job)
    if out is not None:
        out.put(result)
    return result


def consume_in_child(q, out):
    while (job := q.get()) is not None:
        out.put(msg_work.handle(job))
