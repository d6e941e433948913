"""One producer/consumer pair over the hand-off kind named by ``HANDOFF_KIND``; prints the result.

HANDOFF_KIND=queue opentelemetry-instrument --scope-targets 'msg_work:*' python app_messages.py
"""

import asyncio
import os
import queue
import threading

import msg_plumbing
import msg_work
from msg_work import Job


def over_queue(kind):
    kinds = {"queue": queue.Queue, "lifo": queue.LifoQueue, "priority": queue.PriorityQueue}
    q = kinds[kind]()
    results = []
    # queue.Queue: the common loop that stops at a sentinel; the others: exactly one item.
    consume = msg_plumbing.consume if kind == "queue" else msg_plumbing.consume_one
    consumer = threading.Thread(target=consume, args=(q, results))
    consumer.start()
    msg_work.send_queue(q, (1, Job("a", 1)) if kind == "priority" else Job("a", 1))
    if kind == "queue":
        q.put(None)
    consumer.join()
    return results


def main(kind):
    if kind in ("queue", "lifo", "priority"):
        return over_queue(kind)
    if kind == "thread":
        results = []
        msg_work.send_thread(Job("a", 1), results).join()
        return results
    if kind == "executor":
        with msg_work.make_pool("threads") as pool:
            return [msg_work.send_executor(pool, Job("a", 1)).result()]
    if kind == "process_pool":
        with msg_work.make_pool("processes") as pool:
            return [msg_work.send_process_pool(pool, Job("a", 1)).result()]
    if kind.startswith("process_"):
        ctx = msg_work.start_context(kind.split("_", 1)[1])
        out = ctx.Queue()
        p = msg_work.send_process(ctx, Job("a", 1), out)
        result = out.get()
        p.join()
        return [result, p.exitcode]
    if kind.startswith("mp_queue_"):
        ctx = msg_work.start_context(kind.rsplit("_", 1)[1])
        q, out = ctx.Queue(), ctx.Queue()
        p = ctx.Process(target=msg_plumbing.consume_in_child, args=(q, out))
        p.start()
        msg_work.send_mp_queue(q, Job("a", 1))
        q.put(None)
        result = out.get()
        p.join()
        return [result, p.exitcode]
    if kind == "asyncio_queue":

        async def run():
            q, results = asyncio.Queue(), []
            consumer = asyncio.create_task(msg_plumbing.consume_async(q, results))
            await msg_work.send_asyncio_queue(q, Job("a", 1))
            await q.put(None)
            await consumer
            return results

        return asyncio.run(run())
    if kind == "task":
        return [asyncio.run(msg_work.send_task(Job("a", 1)))]
    raise ValueError(f"unknown HANDOFF_KIND {kind!r}")


if __name__ == "__main__":
    print(main(os.environ["HANDOFF_KIND"]))
