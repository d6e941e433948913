"""Messages end to end: a producer/consumer pair over each hand-off kind, run under
``opentelemetry-instrument`` and received over real OTLP, yields one sent and one received event
with the same message ID, the receiver linked to the sender (or its child), all in one trace."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from otlp_receiver import ReceivedSpan
from scope_run import run_instrumented

FLAGS = ["--scope-targets", "msg_work:*"]
SENT, RECEIVED = "otel_scope.message.sent", "otel_scope.message.received"

# kind -> (channel, sending function, receiving function, what the program prints)
HANDOFFS = {
    "queue": ("queue.Queue", "send_queue", "handle", "['a:1']"),
    "lifo": ("queue.LifoQueue", "send_queue", "handle", "['a:1']"),
    "priority": ("queue.PriorityQueue", "send_queue", "handle", "['a:1']"),
    "asyncio_queue": ("asyncio.Queue", "send_asyncio_queue", "handle_async", "['a:1']"),
    "executor": ("concurrent.futures.ThreadPoolExecutor", "send_executor", "handle", "['a:1']"),
    "thread": ("threading.Thread", "send_thread", "handle", "['a:1']"),
    "task": ("asyncio.Task", "send_task", "handle_async", "['a:1']"),
    "process_fork": ("multiprocessing.Process", "send_process", "handle", "['a:1', 0]"),
    "process_spawn": ("multiprocessing.Process", "send_process", "handle", "['a:1', 0]"),
    "mp_queue_fork": ("multiprocessing.Queue", "send_mp_queue", "handle", "['a:1', 0]"),
    "mp_queue_spawn": ("multiprocessing.Queue", "send_mp_queue", "handle", "['a:1', 0]"),
    "process_pool": ("concurrent.futures.ProcessPoolExecutor", "send_process_pool", "handle", "['a:1']"),
}


def _events(spans: list[ReceivedSpan], name: str) -> list[tuple[ReceivedSpan, dict]]:
    return [(s, e.attributes) for s in spans for e in s.events_named(name)]


def _delivered(spans: list[ReceivedSpan]) -> bool:
    return any(s.name.startswith("msg_work.handle") and s.events_named(RECEIVED) for s in spans)


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param(
            kind,
            marks=pytest.mark.skipif(
                kind == "task" and sys.version_info < (3, 11),
                reason="asyncio tasks carry a message only from Python 3.11 (create_task(context=...))",
            ),
        )
        for kind in HANDOFFS
    ],
)
def test_a_handoff_links_the_receiving_span_to_the_sending_one_in_one_trace(
    otlp_receiver, tmp_path: Path, kind: str
) -> None:
    channel, sender_fn, receiver_fn, printed = HANDOFFS[kind]
    env = {**otlp_receiver.env("grpc"), "HANDOFF_KIND": kind}
    traced = run_instrumented("app_messages.py", FLAGS, env, tmp_path)
    assert (traced.returncode, traced.stdout) == (0, printed + "\n"), traced.stderr
    assert traced.stderr_without_session_line == ""
    spans = otlp_receiver.wait_for(_delivered)

    ((sender, sent),) = _events(spans, SENT)
    ((receiver, received),) = _events(spans, RECEIVED)
    assert sender.name == f"msg_work.{sender_fn}" and receiver.name == f"msg_work.{receiver_fn}"
    assert sent["otel_scope.message.id"] == received["otel_scope.message.id"]
    assert sent["otel_scope.message.channel"] == received["otel_scope.message.channel"] == channel
    assert sent["otel_scope.message.from"] == received["otel_scope.message.from"] == sender.name
    assert received["otel_scope.message.to"] == receiver.name
    assert "Job(name='a', size=1)" in sent["otel_scope.message.summary"]
    assert received["otel_scope.message.summary"] == sent["otel_scope.message.summary"]
    assert sent["otel_scope.mechanism"] == received["otel_scope.mechanism"] == "runtime"
    # Linked: a child of the sender where its context was carried, else an explicit span link.
    links = [x for x in receiver.links if x.span_id == sender.span_id]
    if receiver.parent_span_id != sender.span_id:
        assert len(links) == 1
        assert links[0].attributes["otel_scope.message.id"] == sent["otel_scope.message.id"]
    # One trace: the session's, also for a receiver in a child process.
    (session,) = [s for s in spans if s.span_id == sender.parent_span_id]
    assert session.name == "otel_scope.session"
    assert sender.trace_id == receiver.trace_id == session.trace_id
    assert received["otel_scope.session.id"] == session.trace_id
    # one session line: a spawned child belongs to its parent's session and starts none of its own
    assert traced.stderr.count("otel-scope: session ") == 1
    assert traced.session_trace_id == session.trace_id


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_child_started_by_untraced_code_still_joins_the_sessions_trace(
    otlp_receiver, tmp_path: Path, method: str
) -> None:
    # mp_queue_*: the consumer process is started from the untraced main program.
    env = {**otlp_receiver.env("grpc"), "HANDOFF_KIND": f"mp_queue_{method}"}
    traced = run_instrumented("app_messages.py", FLAGS, env, tmp_path)
    assert traced.returncode == 0, traced.stderr
    spans = otlp_receiver.wait_for(_delivered)
    (handle,) = [s for s in spans if s.name == "msg_work.handle"]
    (sender,) = [s for s, _ in _events(spans, SENT)]
    parent = next(s for s in spans if s.span_id == handle.parent_span_id)
    assert parent.name == "otel_scope.session" and parent.trace_id == sender.trace_id


def test_untraced_handoffs_record_nothing_and_the_program_is_unchanged(otlp_receiver, tmp_path: Path) -> None:
    # No target at all: the hand-off patches are installed but no otel-scope span is current.
    env = {**otlp_receiver.env("grpc"), "HANDOFF_KIND": "queue"}
    traced = run_instrumented("app_messages.py", ["--scope-targets", "msg_work:Job.size"], env, tmp_path)
    assert (traced.returncode, traced.stdout) == (0, "['a:1']\n")
    spans = otlp_receiver.wait_for(lambda s: any(x.name == "otel_scope.session" for x in s))
    assert _events(spans, SENT) == [] and _events(spans, RECEIVED) == []


def test_messages_can_be_switched_off(otlp_receiver, tmp_path: Path) -> None:
    env = {**otlp_receiver.env("grpc"), "HANDOFF_KIND": "queue", "OTEL_SCOPE_MESSAGES": "false"}
    traced = run_instrumented("app_messages.py", FLAGS, env, tmp_path)
    assert (traced.returncode, traced.stdout) == (0, "['a:1']\n")
    spans = otlp_receiver.wait_for(lambda s: any(x.name == "msg_work.handle" for x in s))
    assert _events(spans, SENT) == [] and _events(spans, RECEIVED) == []
    assert all(not s.links for s in spans)
