"""Runtime mode in-process: spans for every callable kind, exact restore, no behaviour change."""

from __future__ import annotations

import asyncio
import threading

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import StatusCode

from otel_scope.config import Settings, parse_pattern
from otel_scope.engine import Engine
from otel_scope.targets.planner import Request
from runtime_samples import kinds
from sdk import add_target, installed_provider

MOD = "runtime_samples.kinds"


def test_function_call_becomes_span_with_code_attributes_args_and_return(memory, runtime_engine) -> None:
    add_target(runtime_engine, f"{MOD}:add")
    assert kinds.add(1, 2, 3, scale=2, tag="x") == 12
    (span,) = memory.named("kinds.add")
    a = span.attributes
    assert span.name == f"{MOD}.add"
    assert a["code.function.name"] == f"{MOD}.add"
    assert a["code.file.path"].endswith("runtime_samples/kinds.py")
    assert a["code.line.number"] == kinds.add.__code__.co_firstlineno
    assert a["otel_scope.mechanism"] == "runtime"
    assert a["otel_scope.arg.a"] == "1" and a["otel_scope.arg.b"] == "2"
    assert a["otel_scope.arg.rest"] == "(3,)"
    assert a["otel_scope.arg.scale"] == "2" and a["otel_scope.arg.tag"] == "'x'"
    assert a["otel_scope.return"] == "12"
    assert len(a["otel_scope.session.id"]) == 32


def test_exception_is_recorded_and_reraised_unchanged(memory, runtime_engine) -> None:
    add_target(runtime_engine, f"{MOD}:fail")
    with pytest.raises(ValueError) as info:
        kinds.fail("boom")
    exc = info.value
    (span,) = memory.named("kinds.fail")
    assert span.status.status_code is StatusCode.ERROR
    (event,) = [e for e in span.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "boom"
    # same object, and the traceback still reaches the raising line in the user's code
    tb = exc.__traceback__
    frames = []
    while tb is not None:
        frames.append((tb.tb_frame.f_code.co_name, tb.tb_lineno))
        tb = tb.tb_next
    assert frames[-1] == ("fail", kinds.fail.__code__.co_firstlineno + 1)


@pytest.mark.parametrize(
    ("pattern", "call", "expected"),
    [
        ("Base.method", lambda: kinds.Base(5).method(1), 6),
        ("Base.make", lambda: kinds.Sub.make(7).value, 7),
        ("Base.which", lambda: kinds.Sub.which(), "sub"),
        ("Base.static", lambda: kinds.Base().static(2), 6),
        ("Base.static", lambda: kinds.Base.static(2), 6),
        ("Base.Inner.deep", lambda: kinds.Base.Inner().deep(), "deep"),
        ("decorated", lambda: kinds.decorated(1), 2),
    ],
)
def test_methods_of_every_kind_are_traced_and_behave_the_same(
    memory, runtime_engine, pattern, call, expected
) -> None:
    add_target(runtime_engine, f"{MOD}:{pattern}")
    assert call() == expected
    assert len(memory.named(pattern.rsplit(".", 1)[-1])) == 1


def test_wildcard_leaves_properties_and_repr_alone(memory, runtime_engine) -> None:
    add_target(runtime_engine, f"{MOD}:Base.*")
    b = kinds.Base(4)
    assert b.doubled == 8
    assert isinstance(vars(kinds.Base)["doubled"], property)
    assert vars(kinds.Base)["__repr__"] is not None and not hasattr(
        vars(kinds.Base)["__repr__"], "__wrapped__"
    )
    names = sorted(s.name.rsplit(".", 1)[-1] for s in memory.spans())
    assert names == ["__init__"]  # property access is not a call span; __repr__ is skipped


def test_user_repr_is_never_called_for_self_or_arguments(memory, runtime_engine) -> None:
    add_target(runtime_engine, f"{MOD}:add")
    obj = kinds.Base(1)
    with pytest.raises(TypeError):
        kinds.add(obj, 1)  # Base + int is a TypeError in user code; repr must not be called
    (span,) = memory.named("kinds.add")
    assert "Base" in span.attributes["otel_scope.arg.a"]


def test_remove_restores_the_exact_original_objects(runtime_engine) -> None:
    before = {name: vars(kinds.Base)[name] for name in ("method", "make", "which", "static", "doubled")}
    before_fn = kinds.add
    codes = {name: vars(kinds.Base)[name].__func__.__code__ for name in ("make", "which", "static")}
    handle = add_target(runtime_engine, f"{MOD}:*")
    assert vars(kinds.Base)["make"].__func__.__code__ is not codes["make"]  # a code trampoline
    handle.remove()
    handle.remove()  # idempotent
    for name, obj in before.items():
        assert vars(kinds.Base)[name] is obj
    assert kinds.add is before_fn
    assert {name: vars(kinds.Base)[name].__func__.__code__ for name in codes} == codes
    assert "make" not in vars(kinds.Sub) and kinds.Sub.which() == "sub" and kinds.Base().static(1) == 3


def test_adding_the_same_target_twice_does_not_double_wrap(memory, runtime_engine) -> None:
    h1 = add_target(runtime_engine, f"{MOD}:add")
    h2 = add_target(runtime_engine, f"{MOD}:add")
    kinds.add(1)
    assert len(memory.named("kinds.add")) == 1
    h1.remove()
    kinds.add(1)
    assert len(memory.named("kinds.add")) == 2  # still traced through h2
    h2.remove()
    kinds.add(1)
    assert len(memory.named("kinds.add")) == 2


def test_concurrent_add_and_remove_leave_the_original_in_place(runtime_engine) -> None:
    original = kinds.add

    def churn() -> None:
        for _ in range(50):
            add_target(runtime_engine, f"{MOD}:add").remove()

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert kinds.add is original


def test_sampled_out_calls_make_no_span(runtime_engine) -> None:
    with installed_provider(ParentBased(ALWAYS_OFF)) as memory:
        add_target(runtime_engine, f"{MOD}:add")
        assert kinds.add(1) == 3
        assert memory.spans() == []


def test_async_function_span_covers_the_await(memory, runtime_engine) -> None:
    add_target(runtime_engine, f"{MOD}:async_double")
    assert asyncio.run(kinds.async_double(4)) == 8
    (span,) = memory.named("async_double")
    assert span.attributes["otel_scope.return"] == "8"


def test_generator_span_covers_iteration_and_is_current_only_while_running(memory, runtime_engine) -> None:
    add_target(runtime_engine, f"{MOD}:count_up")
    gen = kinds.count_up(3)
    assert next(gen) == 0
    assert not trace.get_current_span().get_span_context().is_valid  # not leaked to the consumer
    assert gen.send(None) == 1
    assert memory.named("count_up") == []  # still running
    assert list(gen) == [2]
    (span,) = memory.named("count_up")
    assert span.attributes["otel_scope.generator.end"] == "exhausted"
    assert span.attributes["otel_scope.yield.count"] == 3
    assert span.attributes["otel_scope.return"] == "'done'"


def test_generator_send_and_close_keep_their_meaning(memory, runtime_engine) -> None:
    add_target(runtime_engine, f"{MOD}:count_up")
    gen = kinds.count_up(5)
    next(gen)
    with pytest.raises(StopIteration) as info:
        gen.send("stop")
    assert info.value.value == "stopped"
    gen2 = kinds.count_up(5)
    next(gen2)
    gen2.close()
    ends = sorted(s.attributes["otel_scope.generator.end"] for s in memory.named("count_up"))
    assert ends == ["closed", "exhausted"]


def test_async_generator_span_covers_the_iteration(memory, runtime_engine) -> None:
    add_target(runtime_engine, f"{MOD}:async_count")

    async def consume() -> list[int]:
        return [i async for i in kinds.async_count(3)]

    assert asyncio.run(consume()) == [0, 1, 2]
    (span,) = memory.named("async_count")
    assert span.attributes["otel_scope.yield.count"] == 3


def test_async_generator_cleanup_on_aclose_runs_inside_its_span(memory, runtime_engine) -> None:
    add_target(runtime_engine, f"{MOD}:async_stream")
    add_target(runtime_engine, f"{MOD}:add")

    async def first_then_close() -> int:
        stream = kinds.async_stream(5)
        item = await stream.__anext__()
        await stream.aclose()  # the generator's finally runs now, and calls add()
        return item

    assert asyncio.run(first_then_close()) == 0
    (stream,) = memory.named("async_stream")
    (cleanup,) = memory.named("kinds.add")
    assert stream.attributes["otel_scope.generator.end"] == "closed"
    assert cleanup.parent is not None and cleanup.parent.span_id == stream.context.span_id


def test_nesting_follows_context_into_asyncio_tasks(memory, runtime_engine) -> None:
    add_target(runtime_engine, f"{MOD}:async_double")
    tracer = trace.get_tracer("test")

    async def main() -> None:
        with tracer.start_as_current_span("parent"):
            await asyncio.gather(*(asyncio.create_task(kinds.async_double(i)) for i in range(3)))

    asyncio.run(main())
    parent = memory.named("parent")[0]
    children = memory.named("async_double")
    assert len(children) == 3
    assert all(c.parent.span_id == parent.context.span_id for c in children)


def test_disabled_probe_calls_straight_through(memory, runtime_engine) -> None:
    handle = add_target(runtime_engine, f"{MOD}:add")
    runtime_engine.probe_for(f"{MOD}.add").enabled = False
    assert kinds.add(1) == 3
    assert memory.spans() == []
    handle.remove()


def test_nesting_follows_context_into_threads_and_executors(memory, runtime_engine) -> None:
    import concurrent.futures

    from otel_scope.runtime import propagation

    add_target(runtime_engine, f"{MOD}:add")
    tracer = trace.get_tracer("test")
    propagation.install()
    try:
        with tracer.start_as_current_span("parent"):
            t = threading.Thread(target=kinds.add, args=(1,))
            t.start()
            t.join()
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                assert list(pool.map(kinds.add, [1, 2])) == [3, 4]
    finally:
        propagation.uninstall()
    parent = memory.named("parent")[0]
    children = memory.named("kinds.add")
    assert len(children) == 3
    assert all(c.parent.span_id == parent.context.span_id for c in children)
    assert not hasattr(threading.Thread.start, "__wrapped__")  # uninstall restored it


def test_threads_started_with_no_current_span_are_left_alone(runtime_engine) -> None:
    from otel_scope.runtime import propagation

    propagation.install()
    try:
        t = threading.Thread(target=lambda: None)
        t.start()
        t.join()
        assert "run" not in vars(t)  # nothing captured, nothing wrapped
    finally:
        propagation.uninstall()


def test_rate_limit_skips_calls_and_the_next_span_counts_them(memory) -> None:
    from otel_scope.capture import RateLimiter

    limited = Engine(Settings(mode="runtime", rate_limit=1.0))
    try:
        limited.add(Request(parse_pattern(f"{MOD}:add")))
        now = [0.0]
        limited.probe_for(f"{MOD}.add").limiter = RateLimiter(1.0, clock=lambda: now[0])
        for _ in range(50):
            assert kinds.add(1) == 3  # the program sees every call
        assert len(memory.named("kinds.add")) == 1  # a burst of one per second
        now[0] = 1.0
        kinds.add(1)
        spans = memory.named("kinds.add")
        assert len(spans) == 2 and spans[-1].attributes["otel_scope.rate_limited"] == 49
    finally:
        limited.remove_all()


def test_traced_functions_still_pickle_by_reference(memory, runtime_engine) -> None:
    import pickle

    add_target(runtime_engine, f"{MOD}:add")
    assert pickle.loads(pickle.dumps(kinds.add)) is kinds.add  # the wrapper, found by reference
    assert pickle.loads(pickle.dumps(kinds.add))(1) == 3


def test_process_pool_runs_a_traced_function(memory, runtime_engine) -> None:
    import concurrent.futures
    import multiprocessing

    add_target(runtime_engine, f"{MOD}:add")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert pool.submit(kinds.add, 2).result(timeout=60) == 4


def test_contextmanager_methods_of_real_code_keep_their_calling_behaviour(memory, runtime_engine) -> None:
    """jinja2's compiler enters a @contextmanager method per filter: it must stay a context
    manager factory when traced (looking through ``__wrapped__`` made it a generator)."""
    import jinja2  # a declared test dependency: missing it must fail, not skip

    add_target(runtime_engine, "jinja2.compiler:CodeGenerator._filter_test_common")
    template = jinja2.Environment().from_string("{{ name | upper }}")
    assert template.render(name="ada") == "ADA"
    (span,) = memory.named("CodeGenerator._filter_test_common")
    assert span.status.is_ok


def test_decorators_that_change_the_kind_are_traced_as_the_installed_object(memory, runtime_engine) -> None:
    """An asynccontextmanager stays an async context manager factory; a sync wrapper around a
    coroutine function stays sync (it returns the value, not a coroutine)."""
    add_target(runtime_engine, f"{MOD}:opened")
    add_target(runtime_engine, f"{MOD}:run_sync")

    async def use() -> int:
        async with kinds.opened(4) as value:
            return value

    assert asyncio.run(use()) == 8
    assert kinds.run_sync(1) == 2
    assert len(memory.named("kinds.opened")) == 1
    assert len(memory.named("kinds.run_sync")) == 1


def test_a_sampler_that_records_under_unsampled_remote_parents_is_asked(runtime_engine) -> None:
    """ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON): a plain SDK span records
    under an unsampled remote parent, so otel-scope's span must too."""
    from opentelemetry import context
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    sampler = ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON)
    remote = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(0))
    with installed_provider(sampler) as memory:
        add_target(runtime_engine, f"{MOD}:add")
        token = context.attach(trace.set_span_in_context(NonRecordingSpan(remote)))
        try:
            with trace.get_tracer("plain").start_as_current_span("plain"):
                pass
            assert kinds.add(1) == 3
        finally:
            context.detach(token)
        assert len(memory.named("plain")) == 1
        (span,) = memory.named("kinds.add")
        assert span.context.trace_id == 0x1234


def test_trace_ids_handed_to_threads_are_always_their_own() -> None:
    """The cached hex form of the last trace ID is read and written as one value."""
    import sys

    from otel_scope.runtime import tracing

    wrong: list[tuple[int, str]] = []

    def work(base: int) -> None:
        for i in range(20000):
            trace_id = base + (i % 3)
            text = tracing.trace_hex(trace_id)
            if text != format(trace_id, "032x"):
                wrong.append((trace_id, text))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work, args=(n << 64,)) for n in range(1, 5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert wrong == []


@pytest.mark.parametrize("kind", ["generator", "coroutine"])
def test_rate_limited_generator_and_coroutine_spans_count_the_skipped_calls(memory, kind) -> None:
    from otel_scope.capture import RateLimiter

    name = "count_up" if kind == "generator" else "async_double"
    limited = Engine(Settings(mode="runtime", rate_limit=1.0))
    try:
        limited.add(Request(parse_pattern(f"{MOD}:{name}")))
        now = [0.0]
        limited.probe_for(f"{MOD}.{name}").limiter = RateLimiter(1.0, clock=lambda: now[0])

        def call() -> object:
            return list(kinds.count_up(2)) if kind == "generator" else asyncio.run(kinds.async_double(2))

        for _ in range(5):
            call()
        now[0] = 1.0
        call()
        spans = memory.named(name)
        assert len(spans) == 2 and spans[-1].attributes["otel_scope.rate_limited"] == 4
    finally:
        limited.remove_all()


def test_finish_hooks_run_in_order_before_the_span_ends_and_a_failing_one_skips_none(
    memory, runtime_engine
) -> None:
    seen: list[tuple[str, str, bool, type | None]] = []

    def broken(probe, span, exc) -> None:
        seen.append(("broken", probe.name, span.is_recording(), type(exc) if exc else None))
        raise RuntimeError("a hook's own failure")

    def after(probe, span, exc) -> None:
        seen.append(("after", probe.name, span.is_recording(), type(exc) if exc else None))

    runtime_engine.add_finish_hook(broken)
    add_target(runtime_engine, f"{MOD}:add")  # a probe made after the first hook
    runtime_engine.add_finish_hook(after)  # reaches the probe made before it
    runtime_engine.add_finish_hook(after)  # once only
    assert kinds.add(1, 2) == 3
    assert seen == [("broken", f"{MOD}.add", True, None), ("after", f"{MOD}.add", True, None)]
    runtime_engine.remove_finish_hook(broken)
    seen.clear()
    kinds.add(1, 2)
    assert [s[0] for s in seen] == ["after"]
    assert len(memory.named("kinds.add")) == 2


def test_span_observers_see_every_otel_scope_span_start_and_end_once_each(memory, runtime_engine) -> None:
    from otel_scope.runtime import tracing

    events: list[tuple[str, str]] = []

    def started(span, name) -> None:
        events.append(("start", name))

    def ending(span) -> None:
        events.append(("end", span.name if span.is_recording() else "ended already"))

    add_target(runtime_engine, f"{MOD}:add")
    tracing.observe(on_start=started, on_end=ending)
    tracing.observe(on_start=started, on_end=ending)
    try:
        kinds.add(1, 2)
    finally:
        tracing.unobserve(on_start=started, on_end=ending)
    kinds.add(1, 2)
    assert events == [("start", f"{MOD}.add"), ("end", f"{MOD}.add")]
