"""Compile-time rewriting: every construct emits the right values at the original lines."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
import types

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import sampling

from otel_scope import semconv as sc
from otel_scope.compile_time import configure, probes, rewrite_source
from otel_scope.compile_time import recorder as recorder_module
from otel_scope.config.settings import Settings
from otel_scope.runtime.tracing import begin, decide, end_call
from otel_scope.targets.plan import CapturePlan
from rewrite_samples.support import SAMPLES, events, line_of, load, memory_spans, only_span, var_events

L = lambda marker, name="constructs": line_of(name, marker)  # noqa: E731


@pytest.fixture
def spans():
    configure(Settings())
    with memory_spans() as exporter:
        yield exporter
    configure(Settings())


@pytest.fixture(scope="module")
def mod():
    # Every function, and the property named exactly (wildcards leave properties alone).
    every = CapturePlan(level="locals", target="constructs:*")
    return load(
        "constructs", {"Child.prop": CapturePlan(level="locals", target="constructs:Child.prop"), "*": every}
    )


def test_assignment_kinds_emit_their_values_at_the_original_lines(spans, mod):
    assert mod.assignments(1) == 12
    span = only_span(spans, ".assignments")
    assert var_events(span, "x") == [(L("x"), "2"), (L("aug"), "12")]
    assert var_events(span, "y") == [(L("unpack"), "2"), (L("del"), "<deleted>")]
    assert var_events(span, "z") == [(L("unpack"), "2")]
    assert var_events(span, "rest") == [(L("unpack"), "[3, 4]")]
    assert var_events(span, "w") == [(L("ann"), "24")]
    assert var_events(span, "n") == [(L("walrus"), "12")]
    assert var_events(span, "squares") == [(L("comp"), "[0, 1, 4]")]
    assert [line for line, _ in var_events(span, "inc")] == [L("lambda")]
    assert [line for line, _ in var_events(span, "osp")] == [L("import")]
    unpack = next(e for e in events(span) if e.attributes["code.line.number"] == L("unpack"))
    assert {"otel_scope.var.y", "otel_scope.var.z", "otel_scope.var.rest"} <= set(unpack.attributes)
    assert unpack.attributes["otel_scope.var.rest.type"] == "list"
    returned = events(span, sc.EVENT_RETURN)
    assert [(e.attributes["code.line.number"], e.attributes[sc.RETURN_VALUE]) for e in returned] == [
        (L("ret"), "12")
    ]
    assert span.attributes[sc.RETURN_VALUE] == "12"
    assert span.attributes[sc.MECHANISM] == "compile_time"
    assert span.attributes[sc.CODE_LINE_NUMBER] == mod.assignments.__code__.co_firstlineno
    assert span.attributes[sc.TARGET] == "constructs:*"
    assert span.attributes[sc.ARG_PREFIX + "a"] == "1"
    assert mod.assignments.__doc__ == "Docstring stays first."


def test_comprehension_and_lambda_variables_are_not_outer_locals(spans, mod):
    mod.assignments(1)
    span = only_span(spans, ".assignments")
    names = {k for e in span.events for k in e.attributes if k.startswith(sc.VAR_PREFIX)}
    assert "otel_scope.var.i" not in names and "otel_scope.var.q" not in names


def test_every_event_names_its_session_and_mechanism_and_no_call_id(spans, mod):
    mod.assignments(1)
    span = only_span(spans, ".assignments")
    context = span.get_span_context()
    for event in span.events:
        assert event.attributes[sc.MECHANISM] == "compile_time"
        assert event.attributes[sc.SESSION_ID] == f"{context.trace_id:032x}"
        assert "otel_scope.call.id" not in event.attributes  # the span holding it is the call
        assert event.attributes[sc.HIT] >= 1
    assert [e.timestamp for e in span.events] == sorted(e.timestamp for e in span.events)


def test_loop_targets_are_captured_at_the_start_of_each_iteration(spans, mod):
    assert mod.loops(4) == 6
    span = only_span(spans, ".loops")
    assert var_events(span, "i") == [(L("for"), str(i)) for i in range(4)]
    assert var_events(span, "total")[:5] == [(L("for_body") - 2, "0")] + [
        (L("for_body"), str(v)) for v in (0, 1, 3, 6)
    ]
    # one-line loop body: targets first, then the body's assignment, all on that line
    suite = [e for e in events(span) if e.attributes["code.line.number"] == L("for_suite")]
    assert [
        sorted(k for k in e.attributes if k.startswith(sc.VAR_PREFIX) and "type" not in k) for e in suite
    ] == [
        ["otel_scope.var.j", "otel_scope.var.k", "otel_scope.var.l"],
        ["otel_scope.var.total"],
    ]


def test_except_as_finally_and_with_as_are_captured(spans, mod):
    assert mod.handlers(True) == "boom"
    span = only_span(spans, ".handlers")
    assert var_events(span, "err") == [(L("except"), "ValueError('boom')")]
    assert var_events(span, "result") == [(L("except_body"), "'boom'")]
    assert var_events(span, "done") == [(L("finally"), "True")]
    assert [line for line, _ in var_events(span, "fh")] == [L("with")]
    first_line = (SAMPLES / "constructs.py").read_text().splitlines(keepends=True)[0]
    assert var_events(span, "first") == [(L("with"), repr(first_line))]


def test_return_inside_finally_swallows_the_exception_as_before(spans, mod):
    assert mod.return_in_finally() == "from finally"
    span = only_span(spans, ".return_in_finally")
    assert span.status.is_ok
    assert span.attributes[sc.RETURN_VALUE] == "'from finally'"
    assert [e.attributes["code.line.number"] for e in events(span, sc.EVENT_RETURN)] == [L("ret_finally")]


def test_match_case_bindings_are_captured_at_the_case_line(spans, mod):
    assert mod.matcher({"kind": "a", "x": 1}) == "a"
    assert mod.matcher([7, 8, 9]) == 7
    assert mod.matcher("hello") == 5
    assert mod.matcher(3.5) is None
    first, second, third, _ = sorted(
        (s for s in spans.get_finished_spans() if s.name.endswith(".matcher")), key=lambda s: s.start_time
    )
    assert var_events(first, "kind") == [(L("case_map"), "'a'")]
    assert var_events(first, "others") == [(L("case_map"), "{'x': 1}")]
    assert var_events(second, "more") == [(L("case_seq"), "[8, 9]")]
    assert var_events(third, "size") == [(L("case_guard"), "5")]


def test_closures_with_nonlocal_get_their_own_spans_as_children(spans, mod):
    assert mod.outer(3) == 6
    outer = only_span(spans, ".outer")
    inner = [s for s in spans.get_finished_spans() if s.name.endswith("outer.<locals>.bump")]
    assert len(inner) == 2
    assert all(s.parent.span_id == outer.context.span_id for s in inner)
    assert [var_events(s, "count") for s in inner] == [[(L("nonlocal"), "3")], [(L("nonlocal"), "6")]]
    assert var_events(outer, "count") == [(L("nonlocal") - 4, "0")]


def test_assignments_to_globals_are_captured(spans, mod):
    before = mod.COUNTER
    assert mod.use_global(5) == before + 5
    assert var_events(only_span(spans, ".use_global"), "COUNTER") == [(L("global"), str(before + 5))]


def test_generator_events_stay_with_their_call_across_interleaved_suspensions(spans, mod):
    first, second = mod.gen(3), mod.gen(3)
    assert next(first) == 0
    assert next(second) == 0
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing left attached while suspended
    assert first.send(10) == 1  # i = got rebinds the target; the range goes on
    assert next(second) == 1
    assert list(first) == [2]
    assert list(second) == [2]
    done = [s for s in spans.get_finished_spans() if s.name.endswith(".gen")]
    assert len(done) == 2
    one, two = done
    assert var_events(one, "got") == [(L("yield"), "10"), (L("yield"), "None"), (L("yield"), "None")]
    assert var_events(one, "i") == [
        (L("yield") - 1, "0"),
        (L("got"), "10"),
        (L("yield") - 1, "1"),
        (L("yield") - 1, "2"),
    ]
    assert [v for _, v in var_events(two, "i")] == ["0", "1", "2"]
    assert one.attributes[sc.GENERATOR_END] == "exhausted"
    assert one.attributes[sc.RETURN_VALUE] == "'done'"


def test_spans_opened_inside_a_generator_are_its_children_only_while_it_runs(spans, mod):
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("consumer") as consumer:
        gen = mod.gen(2)
        next(gen)
        with tracer.start_as_current_span("between"):
            pass
        list(gen)
    between = only_span(spans, "between")
    assert between.parent.span_id == consumer.get_span_context().span_id


def test_closing_a_generator_early_ends_its_span_as_closed(spans, mod):
    gen = mod.gen(5)
    next(gen)
    gen.close()
    span = only_span(spans, ".gen")
    assert span.attributes[sc.GENERATOR_END] == "closed"
    assert span.status.is_ok


def test_yield_from_returns_the_delegate_result(spans, mod):
    assert list(mod.delegate(2)) == [0, 1]
    assert var_events(only_span(spans, ".delegate"), "result") == [(L("yield_from"), "'done'")]


def test_concurrent_async_tasks_keep_their_own_events(spans, mod):
    async def main():
        return await asyncio.gather(mod.coro(0.02, 1), mod.coro(0.01, 2), mod.coro(0, 3))

    assert asyncio.run(main()) == [2, 4, 6]
    coros = [s for s in spans.get_finished_spans() if s.name.endswith(".coro")]
    assert len(coros) == 3
    pairs = sorted((var_events(s, "before")[0][1], var_events(s, "after")[0][1]) for s in coros)
    assert pairs == [("1", "2"), ("2", "4"), ("3", "6")]
    assert {var_events(s, "after")[0][0] for s in coros} == {L("async_after")}


def test_async_generators_are_instrumented(spans, mod):
    async def main():
        return [item async for item in mod.agen(3)]

    assert asyncio.run(main()) == [0, 10, 20]
    span = only_span(spans, ".agen")
    assert var_events(span, "item") == [(L("agen_item"), v) for v in ("0", "10", "20")]


def test_methods_super_class_cell_and_decorators_work(spans, mod):
    child = mod.Child()
    assert child.greet() == "base:Child"
    assert mod.Child.static(2) == 6
    assert mod.Child.make("!") == "Child!"
    assert child.prop == 42
    assert mod.decorated(4) == 8
    assert var_events(only_span(spans, "Child.greet"), "parent") == [(L("super"), "'base'")]
    assert var_events(only_span(spans, "Child.greet"), "klass")[0][0] == L("class_cell")
    assert var_events(only_span(spans, "Child.static"), "y") == [(L("static"), "6")]
    assert var_events(only_span(spans, "Child.make"), "name") == [(L("classmethod"), "'Child!'")]
    assert var_events(only_span(spans, "Child.prop"), "value") == [(L("property"), "42")]
    assert var_events(only_span(spans, ".decorated"), "doubled") == [(L("decorated"), "8")]


def test_multiline_statements_report_their_first_line(spans, mod):
    assert mod.multiline(1) == "2-22"
    span = only_span(spans, ".multiline")
    assert var_events(span, "x") == [(L("ml_x"), "2")]
    assert var_events(span, "text")[0][0] == L("ml_str") - 1
    assert var_events(span, "combined") == [(L("ml_combined_end") - 3, "'2-22'")]


def test_functions_reading_their_own_frame_are_left_alone_and_said_once_at_debug_level(caplog):
    from otel_scope.compile_time import skips

    mark = skips.mark()
    with caplog.at_level(logging.DEBUG, logger="otel_scope"):
        module = load("constructs")
    assert "uses_locals" in module.REWRITE.skipped
    assert "locals()" in module.REWRITE.skipped["uses_locals"]
    assert module.uses_locals() == ["x"]
    said = [r for r in caplog.records if f"{module.__name__}.uses_locals " in r.getMessage()]
    assert [r.levelname for r in said] == ["DEBUG"]
    assert "(use exec/locals()/frame access)" in said[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "use exec/locals()/frame access" in (skips.summary(mark) or "")


def test_level_boundaries_records_the_call_without_locals(spans):
    module = load("constructs", level="boundaries")
    assert module.assignments(1) == 12
    span = only_span(spans, ".assignments")
    assert events(span) == []
    assert span.attributes[sc.RETURN_VALUE] == "12"


def test_level_lines_emits_an_event_for_every_executed_line(spans):
    module = load("constructs", level="lines")
    module.loops(2)
    span = only_span(spans, ".loops")
    lines = [e.attributes["code.line.number"] for e in events(span, sc.EVENT_LINE)]
    assert lines[:4] == [L("for") - 1, L("for"), L("for_body"), L("for_body")]


def test_chosen_lines_get_line_events_at_level_locals(spans):
    plans = {"loops": CapturePlan(lines=(L("while"),))}
    module = load("constructs", plans=plans)
    module.loops(4)
    span = only_span(spans, ".loops")
    assert [e.attributes["code.line.number"] for e in events(span, sc.EVENT_LINE)] == [L("while")]


def test_level_expressions_records_call_values_with_their_text(spans):
    module = load(
        "constructs",
        plans={"multiline": CapturePlan(level="expressions", lines=(L("ml_x") + 6, L("ml_x") + 8))},
    )
    module.multiline(1)
    span = only_span(spans, ".multiline")
    found = [
        (e.attributes[sc.EXPRESSION_TEXT], e.attributes[sc.EXPRESSION_VALUE])
        for e in events(span, sc.EVENT_EXPRESSION)
    ]
    assert found == [
        ("len(text)", "22"),
        ('"{}-{}".format(\n        x,\n        len(text),\n    )', "'2-22'"),
    ]


def test_a_runtime_span_for_the_same_call_is_reused_and_not_ended(spans, mod):
    func = mod.assignments
    ctx = decide()
    assert ctx is not None
    started = begin("runtime." + func.__qualname__, {sc.MECHANISM: "runtime"}, ctx, code=func.__code__)
    assert started is not None
    span, token = started
    assert func(1) == 12
    assert spans.get_finished_spans() == ()  # the compile-time side did not end the runtime span
    end_call(span, token)
    (only,) = spans.get_finished_spans()
    assert only.name == "runtime.assignments"
    assert var_events(only, "x") == [(L("x"), "2"), (L("aug"), "12")]


def test_threads_calling_one_function_keep_events_in_their_own_spans(spans, mod):
    configure(Settings(call_sampling=False))  # every call of the glob-targeted function
    barrier = threading.Barrier(4)
    results = {}

    def worker(n):
        barrier.wait()
        results[n] = [mod.loops(n) for _ in range(20)]

    threads = [threading.Thread(target=worker, args=(n,)) for n in (3, 4, 5, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [s for s in spans.get_finished_spans() if s.name.endswith(".loops")]
    assert len(done) == 80
    for span in done:
        n = int(span.attributes[sc.ARG_PREFIX + "n"])
        assert [v for _, v in var_events(span, "i")] == [str(i) for i in range(n)]


def test_loops_keep_first_and_last_iterations_and_count_the_rest(spans, mod):
    configure(Settings(loop_sample=2))
    mod.loops(10)
    span = only_span(spans, ".loops")
    assert [v for _, v in var_events(span, "i")] == ["0", "1", "8", "9"]
    hits = [e.attributes[sc.HIT] for e in events(span) if "otel_scope.var.i" in e.attributes]
    assert hits == [1, 2, 9, 10]
    assert span.attributes[sc.CAPTURES_DROPPED] > 0
    assert span.attributes[sc.CAPTURES_DROPPED_REASON] == "loop_sampling"
    assert span.attributes[sc.CAPTURES_RECORDED] == len(span.events)


def test_the_event_cap_keeps_the_earliest_and_latest_events(spans, mod):
    configure(Settings(loop_sample=50, max_events=10))
    mod.loops(30)
    span = only_span(spans, ".loops")
    assert len(span.events) == 10
    assert span.attributes[sc.CAPTURES_RECORDED] == 10
    assert "max_events" in span.attributes[sc.CAPTURES_DROPPED_REASON]
    assert var_events(span, "total")[0] == (L("for_body") - 2, "0")  # the first capture survives
    assert events(span, sc.EVENT_RETURN)  # and so does the last


def test_secret_looking_names_are_redacted(spans):
    source = "def login(user):\n    password = 'hunter2'\n    api_key = 'k'\n    ok = True\n    return ok\n"
    namespace = {"__name__": "auth"}
    exec(rewrite_source(source, "auth.py", "auth", {"login": CapturePlan()}).code, namespace)
    namespace["login"]("bob")
    span = only_span(spans, ".login")
    assert var_events(span, "password") == [(2, "[redacted]")]
    assert var_events(span, "api_key") == [(3, "[redacted]")]
    assert var_events(span, "ok") == [(4, "True")]
    assert span.attributes[sc.REDACTED_COUNT] == 2


def test_a_copy_of_a_secret_under_another_name_is_hidden_and_counted_on_the_span(spans):
    """The copy is hidden whether it was kept before or after the secret name took the value,
    and the span's count says so (it is set as the call ends, before any event is built)."""
    source = (
        "def login(raw):\n"
        "    fetched = raw.strip()\n"
        "    password = fetched\n"
        "    echoed = password\n"
        "    size = len(echoed)\n"
        "    return size\n"
    )
    namespace = {"__name__": "auth_copies"}
    exec(rewrite_source(source, "auth_copies.py", "auth_copies", {"login": CapturePlan()}).code, namespace)
    namespace["login"]("  correct-horse-battery  ")
    span = only_span(spans, ".login")
    assert span.attributes[sc.REDACTED_COUNT] == 3  # counted before the events are read
    assert var_events(span, "fetched") == [(2, "[redacted]")]
    assert var_events(span, "password") == [(3, "[redacted]")]
    assert var_events(span, "echoed") == [(4, "[redacted]")]
    assert var_events(span, "size") == [(5, "21")]


def test_kept_scalars_are_rendered_when_an_event_is_first_read_not_by_the_call(spans, monkeypatch):
    rendered: list[object] = []
    serializer = recorder_module._config.get_serializer()
    render = type(serializer).__call__

    def counting(self, value):
        rendered.append(value)
        return render(self, value)

    monkeypatch.setattr(type(serializer), "__call__", counting)
    source = "def work(n):\n    total = n * 1000\n    label = 'squares'\n    return None\n"
    namespace = {"__name__": "deferred"}
    exec(rewrite_source(source, "deferred.py", "deferred", {"work": CapturePlan()}).code, namespace)
    namespace["work"](7)
    assert 7000 not in rendered and "squares" not in rendered  # the call rendered no local
    span = only_span(spans, ".work")
    assert var_events(span, "total") == [(2, "7000")]
    assert var_events(span, "label") == [(3, "'squares'")]
    assert 7000 in rendered and "squares" in rendered


def test_a_long_string_is_rendered_when_captured_so_the_span_holds_bounded_text(spans):
    source = "def load(n):\n    text = 'x' * n\n    return len(text)\n"
    namespace = {"__name__": "bulky"}
    exec(rewrite_source(source, "bulky.py", "bulky", {"load": CapturePlan()}).code, namespace)
    assert namespace["load"](1_000_000) == 1_000_000
    span = only_span(spans, ".load")
    code = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)
    seen, todo, longest = set(), [span], 0
    while todo:  # the data the ended span (the export queue's item) keeps alive, not code
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, code):
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            longest = max(longest, len(obj))
        todo.extend(gc.get_referents(obj))
    assert longest <= Settings().max_value_length
    ((_, text),) = var_events(span, "text")
    assert text.startswith("'xxx") and len(text) <= Settings().max_value_length


def test_values_whose_repr_raises_never_reach_the_program(spans):
    source = (
        "class Evil:\n    def __repr__(self):\n        raise RuntimeError('no repr')\n"
        "def make():\n    evil = Evil()\n    return evil\n"
    )
    namespace = {"__name__": "evil"}
    exec(rewrite_source(source, "evil.py", "evil", {"make": CapturePlan()}).code, namespace)
    assert type(namespace["make"]()).__name__ == "Evil"
    assert var_events(only_span(spans, ".make"), "evil")[0][0] == 5


def test_a_broken_recorder_switches_itself_off_without_touching_the_program(spans, mod, monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("recorder bug")

    monkeypatch.setattr(recorder_module.CallRecorder, "_keep", broken)
    with caplog.at_level(logging.WARNING, logger="otel_scope"):
        assert mod.assignments(1) == 12
        assert mod.assignments(1) == 12
    warnings = [r for r in caplog.records if "switched off" in r.getMessage()]
    assert len(warnings) == 1
    assert len([s for s in spans.get_finished_spans() if s.name.endswith(".assignments")]) == 1
    configure(Settings())  # configure() re-arms capture


def test_nothing_is_recorded_when_sampled_out_or_switched_off(mod):
    configure(Settings())
    with memory_spans(sampler=sampling.ALWAYS_OFF) as exporter:
        assert mod.loops(5) == 4
        assert exporter.get_finished_spans() == ()
    with memory_spans() as exporter:
        for probe in probes(mod.__name__):
            probe.on = False
        try:
            assert mod.loops(5) == 4
            assert exporter.get_finished_spans() == ()
        finally:
            for probe in probes(mod.__name__):
                probe.on = True


def test_the_capture_rate_limit_skips_calls_and_counts_them(spans, mod):
    configure(Settings(capture_rate_limit=0.001))
    for _ in range(3):
        mod.use_global(1)
    assert len([s for s in spans.get_finished_spans() if s.name.endswith(".use_global")]) == 1


def test_injected_names_do_not_leak_through_star_import(mod):
    exported = {n for n in vars(mod) if not n.startswith("_")}
    assert not [n for n in exported if "otel_scope" in n]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="except* is 3.11+")
def test_except_star_binds_are_captured(spans):
    module = load("star")
    assert module.star_handler() == "handled"
    span = only_span(spans, ".star_handler")
    assert [line for line, _ in var_events(span, "vals")] == [L("star_vals", "star")]
    assert var_events(span, "caught") == [(L("star_caught", "star"), "1")]
    assert [line for line, _ in var_events(span, "types")] == [L("star_types", "star")]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="type parameters are 3.12+")
def test_type_parameter_syntax_is_supported(spans):
    module = load("pep695")
    assert module.first([4, 5]) == 4
    assert module.Box(None).get(3) == 3
    assert var_events(only_span(spans, ".first"), "head") == [(L("head", "pep695"), "4")]
    assert var_events(only_span(spans, "Box.get"), "found") == [(L("found", "pep695"), "3")]


INDENTED = (
    "import sys\n"
    "if sys:\n"
    "\tdef tabbed(a):\n"
    "\t\tb = a + 1\n"
    "\t\treturn b\n"
    "try:\n"
    "    class C:\n"
    "        def m(self, a):\n"
    "            c = a * 2; d = c + 1\n"
    "            return d\n"
    "except ImportError:\n"
    "    pass\n"
    "def outer(a):\n"
    "    def inner(b):\n"
    "        e = b - 1\n"
    "        return e\n"
    "    return inner(a)\n"
)


def test_functions_under_blocks_tabs_and_unplanned_parents_are_rewritten_from_their_own_lines(spans):
    # Each planned function goes through libcst alone (an indented one under an "if 1:" header):
    # its events must carry the module's line numbers, whatever encloses it.
    plans = {"tabbed": CapturePlan(), "C.m": CapturePlan(), "outer.<locals>.inner": CapturePlan()}
    result = rewrite_source(INDENTED, "indented.py", "indented", plans)
    assert sorted(result.instrumented) == ["C.m", "outer.<locals>.inner", "tabbed"]
    namespace: dict = {"__name__": "indented"}
    exec(result.code, namespace)
    assert (namespace["tabbed"](1), namespace["C"]().m(2), namespace["outer"](5)) == (2, 5, 4)
    assert var_events(only_span(spans, ".tabbed"), "b") == [(4, "2")]
    assert var_events(only_span(spans, ".m"), "d") == [(9, "5")]
    assert var_events(only_span(spans, ".inner"), "e") == [(15, "4")]
    assert [s.name for s in spans.get_finished_spans() if s.name.endswith("outer")] == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("return locals()", "it calls locals()"),
        ("return vars()", "it calls vars()"),
        ("return vars(a)", ""),
        ("exec('b = 1')", "it calls exec()"),
        ("return eval('a')", "it calls eval()"),
        ("import sys\n    return sys._getframe()", "it uses ._getframe"),
        ("import inspect\n    return inspect.currentframe()", "it uses .currentframe"),
        ("return a.f_locals", "it uses .f_locals"),
        ("_otel_scope_x = a\n    return _otel_scope_x", "reserved name _otel_scope_x"),
        ("return a._otel_scope_y", "reserved name _otel_scope_y"),
        ("def inner():\n        return locals()\n    return inner", ""),
        ("g = lambda: locals()\n    return g", ""),
        ("return [locals() for _ in a]", "it calls locals()"),
        ("class C:\n        x = vars()\n    return C", ""),
    ],
)
def test_functions_that_read_their_own_frame_are_told_apart_from_those_whose_inner_scopes_do(
    body: str, reason: str
) -> None:
    # The check reads the function's own scope (comprehensions included: from 3.12 on they run
    # in the function's frame), never nested functions, lambdas or classes.
    source = f"def f(a):\n    {body}\n"
    result = rewrite_source(source, "frames.py", "frames", {"f": CapturePlan()})
    if reason:
        assert result.instrumented == [] and reason in result.skipped["f"], result.skipped
    else:
        assert result.instrumented == ["f"], result.skipped


def test_a_function_whose_statements_libcst_and_ast_pair_differently_is_skipped_alone(monkeypatch):
    import ast as python_ast

    import libcst

    from otel_scope.compile_time import rewriter

    one = libcst.parse_module("def f():\n    a = 1\n").body[0]
    two = python_ast.parse("def f():\n    a = 1\n    b = 2\n").body[0]
    with pytest.raises(rewriter._Disagree):
        rewriter._statement_lines(one, two)

    real = rewriter._statement_lines

    def disagree_on_g(function, node):
        if node.name == "g":
            raise rewriter._Disagree("for the test")
        return real(function, node)

    monkeypatch.setattr(rewriter, "_statement_lines", disagree_on_g)
    source = "def f(a):\n    b = a\n    return b\ndef g(a):\n    c = a\n    return c\n"
    result = rewrite_source(source, "pairs.py", "pairs", {"*": CapturePlan()})
    assert result.instrumented == ["f"]
    assert "read its statements differently" in result.skipped["g"]
    namespace: dict = {}
    exec(result.code, namespace)
    assert namespace["g"](3) == 3


def test_wildcards_leave_property_accessors_alone_as_runtime_wildcards_do() -> None:
    # packaging's Version has a dozen properties (epoch, release, pre, ...). Compile-time
    # wildcards rewrote them, runtime wildcards left them alone (the README says wildcards
    # leave properties alone): one wildcard selected different functions per mechanism.
    import inspect

    import packaging.version

    source = inspect.getsource(packaging.version)
    path = packaging.version.__file__
    wild = rewrite_source(source, path, "packaging.version", {"*": CapturePlan(level="locals")})
    assert "Version.__init__" in wild.instrumented and "Version.__str__" not in wild.instrumented
    assert not {"Version.epoch", "Version.release", "Version.public"} & set(wild.instrumented)
    named = rewrite_source(source, path, "packaging.version", {"Version.epoch": CapturePlan(level="locals")})
    assert named.instrumented == ["Version.epoch"]  # named exactly: rewritten


# -- functions stage 1 would leave unchanged skip libcst -------------------------------------------


def _rewritten_jinja2(level: str) -> list[tuple[object, ...]]:
    """Every module of the real jinja2 package rewritten with ``*`` at ``level``: its code (code
    objects compare bytecode, constants, nested code and the line and column table), what was
    instrumented and skipped."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("jinja2")
    assert spec is not None and spec.origin is not None
    out = []
    for path in sorted(Path(spec.origin).parent.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        result = rewrite_source(text, str(path), "m", {"*": CapturePlan(level=level)})
        out.append((result.template, sorted(result.instrumented), sorted(result.skipped.items())))
    return out


@pytest.mark.parametrize("level", ["boundaries", "locals"])
def test_a_function_skipping_libcst_compiles_to_the_code_stage_one_would_make(monkeypatch, level):
    rewriter = sys.modules["otel_scope.compile_time.rewriter"]
    direct = _rewritten_jinja2(level)
    monkeypatch.setattr(rewriter, "_adds_no_calls", lambda *_args: False)  # every function via libcst
    assert _rewritten_jinja2(level) == direct


def test_at_level_boundaries_no_function_without_nested_definitions_goes_through_libcst(monkeypatch):
    rewriter = sys.modules["otel_scope.compile_time.rewriter"]
    parsed: list[str] = []
    real_parse = rewriter.cst.parse_module
    monkeypatch.setattr(rewriter.cst, "parse_module", lambda text: parsed.append(text) or real_parse(text))
    source = (
        "def f(a):\n    b = a + 1\n    return b\n\ndef g(a):\n    def h():\n        return a\n    return h\n"
    )
    result = rewrite_source(source, "<mod>", "m", {"*": CapturePlan(level="boundaries")})
    assert sorted(result.instrumented) == ["f", "g", "g.<locals>.h"]
    assert len(parsed) == 1 and parsed[0].startswith("def g(")  # g holds a nested function: stage 1 plans it
    namespace: dict[str, object] = {}
    exec(result.code, namespace)
    assert namespace["f"](1) == 2 and namespace["g"](3)() == 3  # type: ignore[operator]


# First statements whose first instruction is not simply on their first line, or that emit
# none: the shortcut in _first_line must decline each of them or give the compiler's answer.
FIRST_LINE_TRAPS = """
def percent(a):
    pattern = '_%s__' % (a,)
def percent_return(a):
    return '<a href="%s.html">' % (a,)
def second_line():
    x = (
        a)
def parenthesised_call():
    (
        f)(1)
def folded():
    x = (
        1) + 2
def debug():
    if __debug__:
        pass
def constant_test():
    if 1 and a:
        pass
def bare_yield():
    yield
def yield_value():
    x = yield (
        a)
def not_is():
    return not (
        a is b)
def one_line(): return f(a)
async def awaits():
    await (
        g)
def constant_first():
    "doc"
    "not a docstring"
    return 1
def starts_with_pass():
    pass
    return 1
"""


def _bodies(texts):
    """``(name, function, body)`` of every function in ``texts`` (name -> source), the body as
    stage 2 hands it to ``_first_line``: docstring removed, ``global``/``nonlocal`` hoisted."""
    import ast

    rewriter = sys.modules["otel_scope.compile_time.rewriter"]
    for name, text in texts:
        for fn in ast.walk(ast.parse(text)):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            body = fn.body[1:] if rewriter._is_docstring_node(fn.body[0]) else list(fn.body)
            holder = ast.Module(body, [])
            rewriter._hoist_declarations(holder)
            if holder.body:
                yield name, fn, holder.body


def test_the_first_line_read_off_the_ast_is_the_line_compiling_the_body_finds():
    import importlib.util
    from pathlib import Path

    rewriter = sys.modules["otel_scope.compile_time.rewriter"]
    texts = [("traps", FIRST_LINE_TRAPS)]
    for package in ("jinja2", "toolz", "enum", "pydoc"):  # enum, pydoc: "%" formatting first
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.origin is not None
        origin = Path(spec.origin)
        paths = sorted(origin.parent.rglob("*.py")) if spec.submodule_search_locations else [origin]
        texts += [(str(path), path.read_text(encoding="utf-8")) for path in paths]
    read = compiled = 0
    for name, fn, body in _bodies(texts):
        line = rewriter._leading_line(body[0])
        if line is None:
            compiled += 1
            continue
        read += 1
        assert line == rewriter._compiled_first_line(body, fn), (name, fn.name, fn.lineno)
    assert read > 2 * compiled  # the shortcut is the common case, not a rarity


def test_a_backward_range_left_by_a_marker_is_clamped_so_the_segment_compiles():
    import ast

    rewriter = sys.modules["otel_scope.compile_time.rewriter"]
    tree = ast.parse("def f(a):\n    if a:\n        b = 1\n        print(b)\n")
    line_map = rewriter._LineMap()
    line_map.lines += [20, 21, 22, 19]  # line 4 is marked as belonging to line 19
    rewriter._remap_lines(tree, line_map)
    block = tree.body[0].body[0]
    assert (block.lineno, block.end_lineno) == (21, 21)
    assert block.end_col_offset >= block.col_offset
    compile(tree, "<segment>", "exec", dont_inherit=True)  # 3.11+ refuses a backward range


def test_frame_words_inside_longer_names_do_not_send_a_function_to_the_frame_check(monkeypatch):
    rewriter = sys.modules["otel_scope.compile_time.rewriter"]
    checked: list[str] = []
    real_unsafe = rewriter._unsafe
    monkeypatch.setattr(rewriter, "_unsafe", lambda fn: checked.append(fn.name) or real_unsafe(fn))
    source = (
        "def f(eval_ctx):\n    executed = eval_ctx.vars_seen\n    return executed\n\n"
        "def g(text):\n    value = eval(text)\n    return value\n"
    )
    result = rewrite_source(source, "<mod>", "m", {"*": CapturePlan(level="locals")})
    assert checked == ["g"]
    assert result.instrumented == ["f"] and "eval()" in result.skipped["g"]
