"""On-demand recompilation: a live function starts emitting events, and restore undoes it exactly."""

from __future__ import annotations

import inspect

import pytest

from otel_scope.compile_time import RecompileError, configure, recompile
from otel_scope.compile_time.recompile import prepare
from otel_scope.config.settings import Settings
from otel_scope.targets.plan import CapturePlan
from rewrite_samples.support import line_of, load_original, memory_spans, only_span, var_events


@pytest.fixture
def spans():
    configure(Settings())
    with memory_spans() as exporter:
        yield exporter


@pytest.fixture
def mod():
    return load_original("constructs")


def test_existing_references_see_the_new_code_and_restore_puts_back_the_same_object(spans, mod):
    original = mod.loops.__code__
    stored = {"handler": mod.loops}
    alias = mod.loops
    assert mod.loops(3) == 6 and spans.get_finished_spans() == ()
    done = recompile(mod.loops, CapturePlan(target="constructs:loops"))
    assert stored["handler"](3) == alias(3) == 6
    loops = [s for s in spans.get_finished_spans() if s.name.endswith(".loops")]
    assert len(loops) == 2
    assert var_events(loops[0], "i")[0] == (line_of("constructs", "for"), "0")
    done.restore()
    done.restore()  # idempotent
    assert mod.loops.__code__ is original
    spans.clear()
    assert alias(3) == 6 and spans.get_finished_spans() == ()


def test_bound_methods_and_zero_argument_super_work_after_recompiling(spans, mod):
    child = mod.Child()
    bound = child.greet
    done = recompile(bound, CapturePlan())
    try:
        assert bound() == "base:Child"
        assert mod.Child().greet() == "base:Child"
        assert var_events(spans.get_finished_spans()[0], "parent") == [
            (line_of("constructs", "super"), "'base'")
        ]
    finally:
        done.restore()


def test_a_decorators_closure_reaches_the_recompiled_function(spans, mod):
    done = recompile(mod.decorated, CapturePlan())  # unwrapped through __wrapped__
    try:
        assert mod.decorated(5) == 10
        assert var_events(only_span(spans, ".decorated"), "doubled") == [
            (line_of("constructs", "decorated"), "10")
        ]
    finally:
        done.restore()


def test_a_call_in_flight_finishes_under_the_code_it_started_with(spans, mod):
    running = mod.gen(3)
    assert next(running) == 0
    done = recompile(mod.gen, CapturePlan())
    try:
        assert list(running) == [1, 2]
        assert spans.get_finished_spans() == ()
        assert list(mod.gen(2)) == [0, 1]
        assert len(spans.get_finished_spans()) == 1
    finally:
        done.restore()


def test_one_recompilation_is_measured_and_fast(mod):
    done = recompile(mod.multiline, CapturePlan(level="lines"))
    done.restore()
    assert 0 < done.seconds < 5


def test_things_that_cannot_be_recompiled_say_why(mod):
    with pytest.raises(RecompileError, match="not a Python function"):
        recompile(len, CapturePlan())
    with pytest.raises(RecompileError, match="locals"):
        recompile(mod.uses_locals, CapturePlan())
    square = lambda v: v * v  # noqa: E731
    with pytest.raises(RecompileError):
        recompile(square, CapturePlan())


TICK = """\
def tick(n):
    total = 0
    for i in range(n):
        x = i * 2
        total += x
    return total
"""


@pytest.fixture
def edited_app(tmp_path, monkeypatch):
    """A running app's module whose file is then edited with the same line layout."""
    import importlib
    import linecache
    import sys

    (tmp_path / "tickapp.py").write_text(TICK)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("tickapp")
    (tmp_path / "tickapp.py").write_text(TICK.replace("i * 2", "i * 1000"))
    linecache.checkcache(module.__file__)
    yield module
    sys.modules.pop("tickapp", None)


def test_a_source_edited_after_import_is_refused_and_the_running_body_stays(spans, edited_app):
    original = edited_app.tick.__code__
    with pytest.raises(RecompileError) as info:
        recompile(edited_app.tick, CapturePlan())
    assert str(info.value) == (
        f"cannot recompile tick: {edited_app.__file__} no longer matches the running code "
        "(edited since it was imported?); restart the program to trace the new code"
    )
    assert edited_app.tick.__code__ is original and edited_app.tick(3) == 6  # not 3000


def test_a_live_locals_target_on_an_edited_module_says_why_in_one_line(spans, edited_app, caplog):
    import logging

    from otel_scope.config import parse_pattern
    from otel_scope.engine import Engine
    from otel_scope.targets.planner import Request

    engine = Engine(Settings(mode="hybrid"))
    try:
        with caplog.at_level(logging.WARNING, logger="otel_scope"):
            handle = engine.add(Request(parse_pattern("tickapp:tick"), mode="hybrid", capture_locals=None))
        assert edited_app.tick(3) == 6
        (line,) = [r.getMessage() for r in caplog.records]
        assert line.startswith("otel-scope: could not instrument tickapp.tick: cannot recompile tick: ")
        assert "no longer matches the running code" in line
        assert handle.functions == ["tickapp.tick"]  # the runtime span still applies
    finally:
        engine.remove_all()


def test_an_unedited_source_still_recompiles(spans, tmp_path, monkeypatch):
    import importlib
    import sys

    (tmp_path / "tickok.py").write_text(TICK)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("tickok")
    try:
        done = recompile(module.tick, CapturePlan())
        assert module.tick(2) == 2
        done.restore()
    finally:
        sys.modules.pop("tickok", None)


def _functions_of(module):
    found = []
    for value in vars(module).values():
        if inspect.isfunction(value) and value.__module__ == module.__name__:
            found.append(value)
        elif isinstance(value, type) and value.__module__ == module.__name__:
            found += [f for f in vars(value).values() if inspect.isfunction(f)]
    return found


def test_every_function_of_a_real_library_module_recompiles_and_renders_the_same(spans):
    # jinja2's compiler: 2,000 lines, classes with name-mangled and decorated methods, closures,
    # module imports whose methods the compiler loads with LOAD_ATTR: each function is rewritten
    # from its own lines and compiled with only the top-level statement around it, and must
    # still match the running code and behave the same.
    import jinja2
    import jinja2.compiler

    template = (
        "{% for x in items %}{{ loop.index }}={{ x|upper }}{% if not loop.last %},{% endif %}{% endfor %}"
    )
    expected = jinja2.Environment().from_string(template).render(items=["a", "b"])
    functions = _functions_of(jinja2.compiler)
    assert len(functions) > 100
    originals = [f.__code__ for f in functions]
    prepared = prepare([(f, CapturePlan()) for f in functions])
    assert [p for p in prepared if isinstance(p, RecompileError)] == []
    installed = [p.apply() for p in prepared if not isinstance(p, RecompileError)]
    try:
        assert jinja2.Environment().from_string(template).render(items=["a", "b"]) == expected
    finally:
        for done in installed:
            done.restore()
    names = {s.name for s in spans.get_finished_spans()}
    assert "jinja2.compiler.CodeGenerator.visit_For" in names, sorted(names)[:20]
    visit_for = next(s for s in spans.get_finished_spans() if s.name.endswith("CodeGenerator.visit_For"))
    assert var_events(visit_for, "loop_frame"), [e.attributes for e in visit_for.events][:5]
    assert [f.__code__ for f in functions] == originals


def test_a_function_reachable_under_several_names_is_recompiled_once_without_refusals_and_restored(
    spans, caplog
):
    # jinja2's RootVisitor binds visit_Template, visit_Block, visit_If... all to _simple_visit:
    # a wildcard selects every name, the one function gets one capture, and no name is refused.
    import logging

    import jinja2
    import jinja2.idtracking

    from otel_scope.config import parse_pattern
    from otel_scope.engine import Engine
    from otel_scope.targets.planner import Request

    visitor = jinja2.idtracking.RootVisitor
    shared = visitor.__dict__["_simple_visit"]
    assert visitor.__dict__["visit_Block"] is shared and visitor.__dict__["visit_If"] is shared
    original = shared.__code__
    engine = Engine(Settings(mode="compile_time"))
    try:
        with caplog.at_level(logging.WARNING, logger="otel_scope"):
            handle = engine.add(
                Request(parse_pattern("jinja2.idtracking:RootVisitor.*"), runtime=False, capture_locals=None)
            )
        assert [r.getMessage() for r in caplog.records] == []
        assert shared.__code__ is not original
        env = jinja2.Environment()
        assert env.from_string("{% block b %}{% if x %}{{ x }}{% endif %}{% endblock %}").render(x=1) == "1"
        assert any(s.name.endswith("RootVisitor._simple_visit") for s in spans.get_finished_spans())
        handle.remove()
        assert shared.__code__ is original
    finally:
        engine.remove_all()


@pytest.mark.parametrize("module", ["difflib", "markdown.core"])
def test_targets_then_locals_over_the_same_imported_module_recompile_every_function_again_without_refusals(
    spans, caplog, module
):
    # compile_time mode with --scope-targets 'M:*' and --scope-locals 'M:*': the second request
    # changes every function's plan, and the batch must rewrite each function's original code
    # (it used to refuse all of them as "recompiled already").
    import importlib
    import logging

    from otel_scope.config import parse_pattern
    from otel_scope.engine import Engine
    from otel_scope.targets.planner import Request

    mod = importlib.import_module(module)
    functions = _functions_of(mod)
    originals = [f.__code__ for f in functions]
    engine = Engine(Settings(mode="compile_time"))
    try:
        with caplog.at_level(logging.WARNING, logger="otel_scope"):
            engine.add(Request(parse_pattern(f"{module}:*"), capture_locals=False))
            engine.add(Request(parse_pattern(f"{module}:*"), runtime=False, capture_locals=None))
        assert [r.getMessage() for r in caplog.records] == []
        if module == "difflib":
            assert list(mod.restore(mod.ndiff(["a\n"], ["b\n"]), 1)) == ["a\n"]
            assert "<table" in mod.HtmlDiff().make_table(["a"], ["b"])
            span = only_span(spans, "difflib.restore")
            assert var_events(span, "tag")
        else:
            assert mod.Markdown().convert("*hi*") == "<p><em>hi</em></p>"
            assert var_events(only_span(spans, "markdown.core.Markdown.convert"), "source")
    finally:
        engine.remove_all()
    assert [f.__code__ for f in functions] == originals


def test_a_types_coroutine_generator_is_recompiled_and_can_still_be_awaited(spans) -> None:
    """``@types.coroutine`` flags the live code (asyncio's ``__sleep0``), which no compile of the
    source does: the function was refused as edited since imported ('no longer matches the running
    code', one warning each under ``asyncio.*``), and recompiled code must keep the flag."""
    import asyncio
    from asyncio import tasks

    sleep0 = vars(tasks)["__sleep0"]
    original = sleep0.__code__
    recompiled = recompile(sleep0, CapturePlan(level="lines"))
    try:
        assert sleep0.__code__ is not original and sleep0.__code__.co_flags & inspect.CO_ITERABLE_COROUTINE

        async def main() -> str:
            await asyncio.sleep(0)
            return "slept"

        assert asyncio.run(main()) == "slept"
    finally:
        recompiled.restore()
    assert sleep0.__code__ is original
    span = only_span(spans, "tasks.__sleep0")
    assert span.attributes["otel_scope.mechanism"] == "compile_time"
