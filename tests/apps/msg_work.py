"""Traced side of the hand-off tests (``--scope-targets msg_work:*``): who sends and who handles.

Every hand-off kind has one sending function here; ``handle``/``handle_async`` are the receivers.
The untraced consumers and child-process entry points live in ``msg_plumbing``.
"""

import asyncio
import concurrent.futures
import multiprocessing
import threading

import msg_plumbing


class Job:
    def __init__(self, name, size):
        self.name = name
        self.size = size


def handle(job):
    return f"{job.name}:{job.size}"


async def handle_async(job):
    await asyncio.sleep(0)
    return f"{job.name}:{job.size}"


def send_queue(q, job):
    q.put(job)


def send_thread(job, results):
    t = threading.Thread(target=msg_plumbing.run_and_store, args=(handle, job, results))
    t.start()
    return t


def send_executor(pool, job):
    return pool.submit(handle, job)


def send_process_pool(pool, job):
    return pool.submit(msg_plumbing.handle_in_child, job)


def send_process(ctx, job, out):
    p = ctx.Process(target=msg_plumbing.handle_in_child, args=(job, out))
    p.start()
    return p


def send_mp_queue(q, job):
    q.put(job)


async def send_asyncio_queue(q, job):
    await q.put(job)


async def send_task(job):
    return await asyncio.create_task(handle_async(job))


def start_context(method):
    return multiprocessing.get_context(method)


def make_pool(kind):
    if kind == "threads":
        return concurrent.futures.ThreadPoolExecutor(2)
    return concurrent.futures.ProcessPoolExecutor(1)
