"""Messages in-process (a real SDK pipeline): who receives, what the consumer gets, what untraced
code pays and leaves behind, and that uninstalling restores every patched object."""

from __future__ import annotations

import _queue
import asyncio
import concurrent.futures
import multiprocessing.process
import queue
import threading
from collections.abc import Iterator

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace

from otel_scope.config import Settings, parse_pattern
from otel_scope.engine import Engine
from otel_scope.runtime import messages, propagation
from otel_scope.sessions import state as session_state
from otel_scope.targets.planner import Request
from sdk import MemorySpans

SENT, RECEIVED = "otel_scope.message.sent", "otel_scope.message.received"


class Order:
    def __init__(self, n: int) -> None:
        self.n = n


def send(q, item) -> None:
    q.put(item)


def handle(item) -> object:
    return item


def loop(q, seen: list) -> None:
    """A traced consumer loop whose handler is not traced: the loop span itself receives."""
    while (item := q.get()) is not None:
        seen.append(item)


def submit(pool, item) -> object:
    return pool.submit(handle, item).result()


async def send_async(q, item) -> None:
    await q.put(item)


async def handle_async(item) -> object:
    return item


@pytest.fixture
def traced(memory: MemorySpans) -> Iterator[Engine]:
    engine = Engine(Settings(mode="runtime"))
    for name in ("send", "handle", "loop", "submit", "send_async", "handle_async"):
        engine.add(Request(parse_pattern(f"{__name__}:{name}")))
    propagation.install()
    messages.install(engine.serializer)
    yield engine
    messages.uninstall()
    propagation.uninstall()
    engine.remove_all()


def _events(memory: MemorySpans, name: str) -> list[tuple[object, dict]]:
    return [(s, dict(e.attributes)) for s in memory.spans() for e in s.events if e.name == name]


def _consume_in_thread(q, n: int) -> list:
    got: list = []

    def consume() -> None:
        for _ in range(n):
            got.append(handle(q.get()))

    t = threading.Thread(target=consume)
    t.start()
    return got, t


@pytest.mark.parametrize("kind", ["Queue", "LifoQueue", "PriorityQueue"])
def test_the_consumer_gets_the_identical_object_and_the_next_traced_call_receives(
    memory: MemorySpans, traced: Engine, kind: str
) -> None:
    q = getattr(queue, kind)()
    order = Order(1)
    got, t = _consume_in_thread(q, 1)
    send(q, order)
    t.join()
    assert got == [order] and got[0] is order
    ((sender, sent),) = _events(memory, SENT)
    ((receiver, received),) = _events(memory, RECEIVED)
    assert (
        receiver.name.endswith(".handle")
        and sent["otel_scope.message.id"] == received["otel_scope.message.id"]
    )
    (link,) = receiver.links
    assert link.context.span_id == sender.context.span_id
    assert link.attributes["otel_scope.message.id"] == sent["otel_scope.message.id"]


def test_the_same_object_sent_twice_is_two_messages_received_in_order(
    memory: MemorySpans, traced: Engine
) -> None:
    q: queue.Queue = queue.Queue()
    _, t = _consume_in_thread(q, 2)
    send(q, None)  # a shared singleton: tags are kept per put, not per object
    send(q, None)
    t.join()
    sent = [a["otel_scope.message.id"] for _, a in _events(memory, SENT)]
    received = [a["otel_scope.message.id"] for _, a in _events(memory, RECEIVED)]
    assert len(set(sent)) == 2 and received == sent


def test_a_traced_loop_with_an_untraced_handler_receives_at_the_get(
    memory: MemorySpans, traced: Engine
) -> None:
    q: queue.Queue = queue.Queue()
    seen: list = []
    t = threading.Thread(target=loop, args=(q, seen))
    t.start()
    send(q, Order(1))
    q.put(None)
    t.join()
    ((span, received),) = _events(memory, RECEIVED)
    assert span.name.endswith(".loop") and received["otel_scope.message.to"] == span.name
    (event,) = [e for e in span.events if e.name == RECEIVED]
    assert span.start_time < event.timestamp < span.end_time  # when it was taken, not at the end


def test_asyncio_queue_and_task_handoffs(memory: MemorySpans, traced: Engine) -> None:
    async def main() -> object:
        q: asyncio.Queue = asyncio.Queue()
        order = Order(2)

        async def consume() -> object:
            return await handle_async(await q.get())

        consumer = asyncio.create_task(consume())  # created outside any traced call: no message
        await send_async(q, order)
        assert await consumer is order
        return order

    asyncio.run(main())
    channels = sorted(a["otel_scope.message.channel"] for _, a in _events(memory, RECEIVED))
    assert channels == ["asyncio.Queue"]


def test_handoffs_from_untraced_code_record_nothing_and_leave_nothing(
    memory: MemorySpans, traced: Engine
) -> None:
    q: queue.Queue = queue.Queue()
    original_get = vars(queue.Queue)["_get"]
    q.put(Order(1))
    assert q.get().n == 1
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert pool.submit(lambda: 3).result() == 3
    assert _events(memory, SENT) == [] and messages.queues._tables == {}
    assert vars(queue.Queue)["_get"] is original_get  # receiving is armed by the first message only


def test_the_session_root_span_is_not_a_sender(memory: MemorySpans, traced: Engine) -> None:
    root = trace.get_tracer("test").start_span("otel_scope.session")
    ctx = trace.set_span_in_context(root)
    previous = session_state.fallback_context
    session_state.set_fallback_context(ctx)
    token = otel_context.attach(ctx)
    try:
        q: queue.Queue = queue.Queue()
        q.put(Order(1))
        q.get()
    finally:
        otel_context.detach(token)
        session_state.set_fallback_context(previous)
        root.end()
    assert _events(memory, SENT) == []


def test_a_pool_submit_is_one_message_not_its_internal_queue_and_threads(
    memory: MemorySpans, traced: Engine
) -> None:
    # The pool's own work queue and the worker thread its first submit starts are not messages.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert submit(pool, Order(3)).n == 3
    ((_, sent),) = _events(memory, SENT)
    ((receiver, _),) = _events(memory, RECEIVED)
    assert sent["otel_scope.message.channel"] == "concurrent.futures.ThreadPoolExecutor"
    assert sent["otel_scope.message.to"] == f"{__name__}.handle"
    assert receiver.name.endswith(".handle") and receiver.links == ()  # a child of the submitter


def test_uninstall_restores_every_patched_object(traced: Engine) -> None:
    patched = {
        "Queue._put": vars(queue.Queue)["_put"],
        "start": vars(multiprocessing.process.BaseProcess)["start"],
    }
    assert queue.SimpleQueue is _queue.SimpleQueue  # never replaced (see messages.py)
    messages.uninstall()
    assert vars(queue.Queue)["_put"] is not patched["Queue._put"]
    assert vars(queue.Queue)["_put"].__qualname__ == "Queue._put"
    assert not hasattr(vars(queue.Queue)["_put"], "__wrapped__")
    assert not hasattr(vars(multiprocessing.process.BaseProcess)["start"], "__wrapped__")
    assert propagation.handoff_hook is None
    messages.install(traced.serializer)  # the fixture uninstalls again


def test_a_put_after_uninstall_through_a_kept_patched_method_tags_nothing(
    memory: MemorySpans, traced: Engine
) -> None:
    class Inbox(queue.Queue):  # defined while capture is on: it keeps the patched _put
        _put = queue.Queue._put

    messages.uninstall()  # a put racing with uninstall reaches the patched code the same way
    inbox: Inbox = Inbox()
    item = Order(1)
    send(inbox, item)  # a traced call puts it
    assert inbox.get() is item
    assert messages.queues._tables == {}  # no entry left holding the item for the queue's lifetime
    assert _events(memory, SENT) == []
    messages.install(traced.serializer)  # the fixture uninstalls again
