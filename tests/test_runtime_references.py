"""Runtime targets reach every reference to a function, not only its module attribute.

Flask keeps views in ``app.view_functions``, registries keep handlers in dicts, ``partial`` keeps
its function: all were taken before the target existed. The function's code is swapped for a
trampoline (the object stays the same), so they all produce spans; removing restores the code.
"""

from __future__ import annotations

import pytest

from otel_scope.config import parse_pattern
from otel_scope.engine.registry import Handle
from otel_scope.runtime import trampoline
from otel_scope.targets.planner import Request
from runtime_samples import webapp
from sdk import add_target

MOD = "runtime_samples.webapp"


def test_flask_views_registered_before_the_target_produce_spans(memory, runtime_engine) -> None:
    view = webapp.app.view_functions["hello"]
    code = view.__code__
    handle = add_target(runtime_engine, f"{MOD}:hello")
    reply = webapp.app.test_client().get("/hello/ada")
    assert (reply.status_code, reply.text) == (200, "hello ada")
    (span,) = memory.named("webapp.hello")
    assert span.attributes["otel_scope.arg.name"] == "'ada'"
    assert span.attributes["otel_scope.return"] == "'hello ada'"
    assert webapp.app.view_functions["hello"] is view is webapp.hello  # the same object throughout
    assert runtime_engine.active()[0]["installed"] == "code trampoline"
    handle.remove()
    assert view.__code__ is code
    webapp.app.test_client().get("/hello/bob")
    assert len(memory.named("webapp.hello")) == 1


def test_registry_entries_and_static_views_reach_the_probe(memory, runtime_engine) -> None:
    add_target(runtime_engine, f"{MOD}:greet")
    add_target(runtime_engine, f"{MOD}:Views.ping")
    assert webapp.HANDLERS["greet"]("ada", punctuation="?") == "hi ada?"
    assert webapp.app.test_client().get("/ping").text == "pong"
    (greet,) = memory.named("webapp.greet")
    assert greet.attributes["otel_scope.arg.who"] == "'ada'"
    assert greet.attributes["otel_scope.arg.punctuation"] == "'?'"
    assert len(memory.named("Views.ping")) == 1


def test_a_partial_made_before_the_target_reaches_it(memory, runtime_engine) -> None:
    """attrs' ``attr.dataclass`` is ``partial(attrs, auto_attribs=True)``, made at import."""
    import attr
    from attr import _make

    add_target(runtime_engine, "attr._make:attrs")

    @attr.dataclass
    class Point:
        x: int

    assert Point(1).x == 1
    assert len(memory.named("_make.attrs")) == 1
    assert attr.dataclass.func is vars(_make)["attrs"]


def test_signature_source_and_kind_stay_those_of_the_function(runtime_engine) -> None:
    import inspect

    before = (inspect.signature(webapp.greet), inspect.getsourcelines(webapp.greet))
    add_target(runtime_engine, f"{MOD}:greet")
    assert trampoline.is_trampoline(webapp.greet.__code__)
    assert (inspect.signature(webapp.greet), inspect.getsourcelines(webapp.greet)) == before


def test_a_wrong_call_through_a_trampoline_fails_with_pythons_own_message(runtime_engine) -> None:
    add_target(runtime_engine, f"{MOD}:greet")
    with pytest.raises(TypeError) as info:
        webapp.greet()  # missing argument: raised by the call itself, as untraced
    assert "greet() missing 1 required positional argument: 'who'" in str(info.value)


def test_a_call_left_out_by_sampling_runs_straight_from_its_trampoline(memory) -> None:
    """A package-wide target leaves most calls out: those run the function from the trampoline
    itself, so no otel-scope frame is on their stack, and every trampoline instruction is on
    the function's def line (tracebacks point at the user's code, nowhere else)."""
    import traceback
    from pathlib import Path

    import jinja2.utils

    import otel_scope
    from otel_scope.config import Settings
    from otel_scope.engine import Engine

    engine = Engine(Settings(mode="runtime", call_sample_rate=0))  # the first 5 calls, then none
    add_target(engine, "jinja2.utils:*")
    try:
        function = jinja2.utils.import_string
        lines = {line for _, _, line in function.__code__.co_lines()} - {None}
        assert lines == {function.__code__.co_firstlineno}
        for _ in range(8):
            function("no_such_module_here.x", silent=True)
        with pytest.raises(ImportError) as raised:
            function("no_such_module_here.x")
        ours = str(Path(otel_scope.__file__).parent)
        frames = traceback.extract_tb(raised.value.__traceback__)
        assert [f for f in frames if f.filename.startswith(ours)] == []
        assert [f.name for f in frames[1:3]] == ["import_string", "import_string"]  # trampoline, body
        (late,) = [
            s
            for s in memory.named("jinja2.utils.import_string")
            if "otel_scope.sampling.late" in s.attributes
        ]
        assert late.status.status_code.name == "ERROR"
    finally:
        engine.remove_all()


def test_a_traceback_shows_the_trampoline_frame_as_the_def_line_with_no_carets_under_it(
    runtime_engine,
) -> None:
    """The trampoline's instructions have no columns: those of the template's own source marked
    a meaningless part of the user's def line with carets, in every traceback through it."""
    import traceback

    import jinja2.utils

    add_target(runtime_engine, "jinja2.utils:import_string")
    with pytest.raises(ImportError) as raised:
        jinja2.utils.import_string("no_such_module_here.x")
    blocks = traceback.format_exception(raised.value)
    (frame,) = [b for b in blocks if "in import_string" in b and "def import_string" in b]
    assert len(frame.rstrip().splitlines()) == 2, frame  # the File line and the def line, no carets
    code = jinja2.utils.import_string.__code__
    if hasattr(code, "co_positions"):
        assert {col for *_, col in list(code.co_positions())[1:]} == {None}


def test_functions_sharing_a_signature_each_get_a_trampoline_of_their_own(memory) -> None:
    """Trampolines are made from one compiled template per shape of parameters: each must still
    point at its own function's file, def line, name and probe."""
    import types

    import jinja2.utils

    from otel_scope.config import Settings
    from otel_scope.engine import Engine

    functions = {
        name: f
        for name, f in vars(jinja2.utils).items()
        if type(f) is types.FunctionType and f.__module__ == "jinja2.utils" and not name.startswith("_")
    }
    before = {name: (f.__code__.co_firstlineno, f.__code__.co_name) for name, f in functions.items()}
    engine = Engine(Settings(mode="runtime", call_sampling=False))
    add_target(engine, "jinja2.utils:*")
    try:
        assert (
            functions["object_type_repr"].__code__.co_varnames[:1]
            == functions["pformat"].__code__.co_varnames[:1]
        )
        holders = set()
        for name, f in functions.items():
            code = f.__code__
            assert trampoline.is_trampoline(code), name
            assert (code.co_firstlineno, code.co_name, code.co_filename) == (
                *before[name],
                jinja2.utils.__file__,
            )
            assert {line for _, _, line in code.co_lines()} - {None} == {before[name][0]}
            (own,) = [c for c in code.co_consts if type(c).__name__ == "_Holder"]  # its probe, its copy
            holders.add(id(own))
        assert len(holders) == len(functions)
        assert jinja2.utils.object_type_repr(None) == "None"
        assert jinja2.utils.pformat({"a": 1}) == "{'a': 1}"
        assert [s.name for s in memory.spans()][-2:] == [
            "jinja2.utils.object_type_repr",
            "jinja2.utils.pformat",
        ]
    finally:
        engine.remove_all()


def test_an_exception_leaving_a_recorded_call_carries_no_otel_scope_frame(memory) -> None:
    """A recorded call runs through the probe and the span's code; the traceback the program
    prints and walks used to show those frames (two per traced call on the way up). Real
    jinja2 raising through three traced functions: only the user's frames are left, plus the
    trampoline's, on each function's def line."""
    import traceback
    from pathlib import Path

    import jinja2

    import otel_scope
    from otel_scope.config import Settings
    from otel_scope.engine import Engine

    def failing_frames() -> list[traceback.FrameSummary]:
        with pytest.raises(jinja2.TemplateSyntaxError) as raised:
            jinja2.Environment().from_string("{% if %}")
        return traceback.extract_tb(raised.value.__traceback__)

    plain = failing_frames()
    engine = Engine(Settings(mode="runtime", call_sampling=False))
    add_target(engine, "jinja2.environment:Environment.*")
    try:
        traced = failing_frames()
    finally:
        engine.remove_all()
    assert memory.named("jinja2.environment.Environment.from_string")  # recorded, not skipped
    ours = str(Path(otel_scope.__file__).parent)
    assert [f for f in traced if f.filename.startswith(ours)] == []
    # Each traced function's trampoline frame, on its first line, is the only frame added.
    added = [
        f
        for f in traced
        if (f.filename, f.lineno, f.name) not in {(p.filename, p.lineno, p.name) for p in plain}
    ]
    first_lines = {f.name: getattr(jinja2.Environment, f.name).__code__.co_firstlineno for f in added}
    assert added and all(f.lineno == first_lines[f.name] for f in added)  # def line, or its decorator
    assert [(f.filename, f.lineno) for f in traced if f not in added] == [
        (f.filename, f.lineno) for f in plain
    ]


@pytest.fixture
def hybrid_engine(memory):
    from otel_scope.config import Settings
    from otel_scope.engine import Engine

    e = Engine(Settings(mode="hybrid"))
    yield e
    e.remove_all()


def _span_target(engine, name: str) -> Handle:
    return engine.add(Request(parse_pattern(f"{MOD}:{name}")))


def _locals_target(engine, name: str) -> Handle:
    return engine.add(Request(parse_pattern(f"{MOD}:{name}"), runtime=False, capture_locals=None))


@pytest.mark.parametrize("added", ["span first", "locals first"])
@pytest.mark.parametrize("removed", ["span first", "locals first"])
def test_hybrid_flask_view_registered_before_the_target_gets_one_runtime_span_with_its_locals(
    memory, hybrid_engine, added: str, removed: str
) -> None:
    """The view sits in ``app.view_functions`` before either target exists: the trampoline
    reaches it and calls the recompiled body, which puts its events on the runtime span."""
    view = webapp.app.view_functions["total"]
    code = view.__code__
    makers = [_span_target, _locals_target]
    handles = [make(hybrid_engine, "total") for make in (makers if added == "span first" else makers[::-1])]
    (row,) = hybrid_engine.active()
    assert (row["mechanism"], row["installed"]) == ("hybrid", "code trampoline")
    assert webapp.app.test_client().get("/total/4").text == "6"
    (span,) = memory.named("webapp.total")  # one span per call, never a second compile-time one
    assert span.attributes["otel_scope.mechanism"] == "runtime"
    assert span.attributes["otel_scope.arg.n"] == "4"
    key = "otel_scope.var.running"
    running = [e.attributes[key] for e in span.events if key in e.attributes]
    assert running == ["0", "0", "1", "3", "6"]
    span_first = handles if added == "span first" else handles[::-1]
    for handle in span_first if removed == "span first" else span_first[::-1]:
        handle.remove()
    assert view.__code__ is code and webapp.app.view_functions["total"] is view is webapp.total
    assert webapp.app.test_client().get("/total/3").text == "3"
    assert len(memory.named("webapp.total")) == 1


def test_a_hybrid_function_keeps_its_locals_when_its_runtime_target_goes(memory, hybrid_engine) -> None:
    """Removing the span target takes the trampoline away and leaves the recompiled body on the
    function itself: its calls still get locals (in a compile-time span), then restore exactly."""
    code = webapp.total.__code__
    span, captured = _span_target(hybrid_engine, "total"), _locals_target(hybrid_engine, "total")
    span.remove()
    assert not trampoline.installed(webapp.total) and webapp.total.__code__ is not code
    assert webapp.app.test_client().get("/total/2").text == "1"
    (call,) = memory.named("webapp.total")
    assert call.attributes["otel_scope.mechanism"] == "compile_time"
    captured.remove()
    assert webapp.total.__code__ is code


def test_state_capture_reaches_a_bound_method_held_in_a_registry(memory, runtime_engine) -> None:
    bump = webapp.HANDLERS["bump"]
    code = webapp.Counter.bump.__code__
    runtime_engine.add(Request(parse_pattern(f"{MOD}:Counter.bump"), state=True))
    assert runtime_engine.active()[0]["installed"] == "code trampoline"
    before = webapp.COUNTER.count
    assert bump(2) == before + 2
    (span,) = memory.named("Counter.bump")
    (change,) = [e.attributes for e in span.events if e.name == "otel_scope.state"]
    assert (change["otel_scope.state.attribute"], change["otel_scope.state.before"]) == ("count", str(before))
    assert change["otel_scope.state.after"] == str(before + 2)
    assert span.attributes["otel_scope.arg.by"] == "2"
    runtime_engine.remove_all()
    assert webapp.Counter.bump.__code__ is code


def test_an_exactly_named_copied_in_function_is_wrapped_at_that_name_only(memory) -> None:
    # enum copies Enum._generate_next_value_ into every enum class: jinja2.utils._PassArg holds
    # the very function object enum.Enum defines. Naming jinja2's attribute traces calls made
    # through it, and no other enum's (a trampoline in the shared code would trace them all).
    import enum

    import jinja2.utils

    from otel_scope.config import Settings, parse_pattern
    from otel_scope.engine import Engine
    from otel_scope.targets.planner import Request

    def function(held: object) -> object:  # 3.12+ hold it in a staticmethod of each class's own
        return getattr(held, "__func__", held)

    shared = enum.Enum.__dict__["_generate_next_value_"]
    held = vars(jinja2.utils._PassArg)["_generate_next_value_"]
    assert function(held) is function(shared)
    original_code = function(shared).__code__
    engine = Engine(Settings(mode="runtime"))
    try:
        handle = engine.add(Request(parse_pattern("jinja2.utils:_PassArg._generate_next_value_")))
        assert handle.functions == ["jinja2.utils._PassArg._generate_next_value_"]
        (row,) = engine.active()
        assert row["installed"] == "wrapper (this name only)"
        assert function(shared).__code__ is original_code
        assert enum.Enum.__dict__["_generate_next_value_"] is shared
        assert jinja2.utils._PassArg._generate_next_value_("x", 1, 0, []) == 1
        assert enum.Enum._generate_next_value_("x", 1, 0, []) == 1
        assert enum.Enum("Colour", "RED GREEN").GREEN.value == 2  # another enum, through enum's own
        assert [s.name for s in memory.spans()] == ["jinja2.utils._PassArg._generate_next_value_"]
        handle.remove()
        assert vars(jinja2.utils._PassArg)["_generate_next_value_"] is held
    finally:
        engine.remove_all()


def test_a_packages_functions_share_templates_and_each_trampoline_keeps_its_own_names() -> None:
    """jinja2's 671 functions have 265 different signatures but 44 shapes of parameters: one
    compiled template per shape (about 0.4 ms each), renamed per function, made ``jinja2.*``
    ready about 80 ms sooner. The names must all be the function's own: its parameters and free variables,
    and the keywords the trampoline passes on, which are strings among its constants."""
    import importlib
    import pkgutil
    import types

    import jinja2

    modules = [jinja2] + [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(jinja2.__path__, "jinja2.")
        if "async" not in info.name
    ]
    functions = {
        id(f): f
        for module in modules
        for value in list(vars(module).values())
        for f in ([value, *vars(value).values()] if isinstance(value, type) else [value])
        if isinstance(f, types.FunctionType) and f.__module__.startswith("jinja2")
    }
    functions = {key: f for key, f in functions.items() if not trampoline.unsupported(f)}
    trampoline._template.cache_clear()
    signatures = set()
    for func in functions.values():
        original = func.__code__
        code = trampoline._trampoline_code(original, object(), gated=True)
        n_params = original.co_argcount + original.co_kwonlyargcount
        n_params += bool(original.co_flags & 0x04) + bool(original.co_flags & 0x08)  # *args, **kw
        assert code.co_varnames[:n_params] == original.co_varnames[:n_params]
        assert code.co_freevars == original.co_freevars
        strings = _strings(code.co_consts)
        assert not [c for c in strings if c.startswith(("_otel_scope_p", "_otel_scope_f"))], func.__qualname__
        n_pos = original.co_argcount
        kwonly = original.co_varnames[n_pos : n_pos + original.co_kwonlyargcount]
        assert set(kwonly) <= set(strings)  # passed on to the function by their own names
        signatures.add((original.co_varnames[:n_params], original.co_flags & trampoline._KINDS))
    assert len(functions) > 500
    assert trampoline._template.cache_info().currsize * 4 < len(signatures)


def _strings(consts: tuple[object, ...]) -> list[str]:
    found: list[str] = []
    for c in consts:
        if isinstance(c, str):
            found.append(c)
        elif isinstance(c, tuple):
            found += _strings(c)
    return found
