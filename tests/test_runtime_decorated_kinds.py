"""Runtime mode over what decorators make of functions, on real third-party code of each shape.

Each object keeps its behaviour and its own API while traced (``cache_info()``, ``register()``,
``registry``, ``__wrapped__``, the cached value of a ``cached_property``), and removing the
target puts back the exact object. What cannot be traced is refused in one line saying why.
"""

from __future__ import annotations

import functools
import inspect
import logging
import pathlib
import sys

import pytest

from otel_scope.config import parse_pattern
from otel_scope.targets.planner import Request
from runtime_samples import kinds
from scope_run import run_instrumented, stored_trace
from sdk import add_target


def test_module_level_lru_cache_is_traced_and_keeps_its_cache_api(memory, runtime_engine) -> None:
    from rich import cells

    original = vars(cells)["get_character_cell_size"]
    original.cache_clear()
    handle = add_target(runtime_engine, "rich.cells:get_character_cell_size")
    assert cells.get_character_cell_size("a") == 1
    assert cells.get_character_cell_size("a") == 1
    info = cells.get_character_cell_size.cache_info()
    assert (info.hits, info.misses) == (1, 1)  # the cache itself still serves the second call
    # wrapt's proxy is one more __wrapped__ layer: the chain still ends at the same function
    assert inspect.unwrap(cells.get_character_cell_size) is original.__wrapped__
    spans = memory.named("cells.get_character_cell_size")
    assert len(spans) == 2
    assert spans[0].attributes["code.file.path"].endswith("rich/cells.py")
    assert spans[0].attributes["otel_scope.arg.character"] == "'a'"
    handle.remove()
    assert vars(cells)["get_character_cell_size"] is original


def test_classmethod_over_lru_cache_is_traced_and_keeps_binding_and_cache(memory, runtime_engine) -> None:
    from rich.color import Color

    raw = vars(Color)["parse"]
    handle = add_target(runtime_engine, "rich.color:Color.parse")
    assert Color.parse("red").name == "red"
    assert Color.parse.cache_info().currsize >= 1
    (span,) = memory.named("Color.parse")
    assert span.attributes["otel_scope.arg.color"] == "'red'"
    assert "otel_scope.arg.cls" not in span.attributes
    handle.remove()
    assert vars(Color)["parse"] is raw


def test_singledispatch_function_is_traced_and_keeps_register_and_dispatch(
    memory, runtime_engine, tmp_path
) -> None:
    """importlib_resources.as_file dispatches on the path type to @contextmanager functions."""
    from importlib_resources import _common

    original = vars(_common)["as_file"]
    handle = add_target(runtime_engine, "importlib_resources._common:as_file")
    target = tmp_path / "data.txt"
    target.write_text("x")
    with _common.as_file(target) as path:
        assert path == target  # the pathlib.Path implementation, entered as a context manager
    assert _common.as_file.dispatch(pathlib.Path) is original.dispatch(pathlib.Path)
    assert _common.as_file.registry is original.registry

    class Marker:
        pass

    @_common.as_file.register(Marker)
    def _(path):
        return "marker"

    assert _common.as_file(Marker()) == "marker"  # registered through the traced object
    assert Marker in original.registry
    assert len(memory.named("_common.as_file")) == 2
    handle.remove()
    assert vars(_common)["as_file"] is original


def test_singledispatchmethod_is_traced_and_keeps_dispatching(memory, runtime_engine) -> None:
    raw = vars(kinds.Formatter)["show"]
    handle = add_target(runtime_engine, "runtime_samples.kinds:Formatter.show")
    f = kinds.Formatter()
    assert (f.show(1), f.show("a")) == ("int:1", "any:a")
    assert kinds.Formatter.show.register is not None
    assert len(memory.named("Formatter.show")) == 2
    handle.remove()
    assert vars(kinds.Formatter)["show"] is raw


def test_cached_property_is_traced_once_per_instance_and_still_caches(memory, runtime_engine) -> None:
    """packaging's InvalidRequirement.message is a functools.cached_property."""
    from packaging.requirements import InvalidRequirement

    descriptor = vars(InvalidRequirement)["message"]
    func = descriptor.func
    handle = add_target(runtime_engine, "packaging.requirements:InvalidRequirement.message")
    error = InvalidRequirement("bad requirement")
    assert error.message == "bad requirement"
    assert error.message == "bad requirement"
    assert vars(error)["message"] == "bad requirement"  # the value, cached on the instance
    assert vars(InvalidRequirement)["message"] is descriptor
    (span,) = memory.named("InvalidRequirement.message")
    assert span.attributes["otel_scope.return"] == "'bad requirement'"
    handle.remove()
    assert descriptor.func is func


def test_module_level_partial_is_traced_and_still_applies_its_arguments(memory, runtime_engine) -> None:
    """attrs defines ``attr.dataclass = partial(attrs, auto_attribs=True)``."""
    import pickle

    import attr

    original = vars(attr)["dataclass"]
    handle = add_target(runtime_engine, "attr:dataclass")

    @attr.dataclass
    class Point:
        x: int
        y: int = 0

    assert [a.name for a in attr.fields(Point)] == ["x", "y"] and Point(1) == Point(1, 0)
    assert attr.dataclass.keywords == {"auto_attribs": True}
    assert pickle.loads(pickle.dumps(attr.dataclass)).func is original.func  # by value, as before
    (span,) = memory.named("attr.dataclass")
    assert span.attributes["code.file.path"].endswith("attr/_make.py")
    assert not any(k.startswith("otel_scope.arg.") for k in span.attributes)  # positions shifted
    handle.remove()
    assert vars(attr)["dataclass"] is original


def test_python_callable_object_made_by_update_wrapper_keeps_its_type_and_traces_its_function(
    memory, runtime_engine
) -> None:
    """pytest's @fixture returns a FixtureFunctionDefinition (functools.update_wrapper(self, f)),
    whose very type pytest checks to discover fixtures, and whose function it calls to run them."""
    from _pytest import tmpdir

    original = vars(tmpdir)["tmp_path"]
    code = original._get_wrapped_function().__code__
    handle = add_target(runtime_engine, "_pytest.tmpdir:tmp_path")
    assert type(vars(tmpdir)["tmp_path"]) is type(original)  # the same object, not a proxy
    assert vars(tmpdir)["tmp_path"] is original
    with pytest.raises(pytest.fail.Exception, match="called directly"):
        tmpdir.tmp_path()  # the same refusal as untraced
    assert memory.named("tmpdir.tmp_path") == []  # the function never ran
    handle.remove()
    assert original._get_wrapped_function().__code__ is code


def test_a_pytest_session_with_its_fixtures_traced_discovers_and_runs_them(tmp_path) -> None:
    """Wrapped at their attributes, pytest's own fixtures (tmp_path, capsys) were not discovered
    (a PytestWarning each) and every test using one failed: 'fixture not found'."""
    (tmp_path / "test_uses_fixtures.py").write_text(
        "def test_it(tmp_path, capsys):\n    print('out')\n    assert tmp_path.is_dir()\n"
        "    assert capsys.readouterr().out == 'out\\n'\n"
    )
    (tmp_path / "run_session.py").write_text(
        "import sys, pytest\n"
        "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', 'test_uses_fixtures.py']))\n"
    )
    flags = ["--scope-mode", "runtime", "--scope-targets", "_pytest.tmpdir:*,_pytest.capture:*"]
    run = run_instrumented("run_session.py", flags, {}, tmp_path, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout and "Warning" not in run.stdout + run.stderr
    names = [s.name for s in stored_trace(tmp_path, run).spans]
    assert names.count("_pytest.tmpdir.tmp_path") == 1  # the fixture ran, traced
    assert names.count("_pytest.capture.capsys") == 1


def test_callable_object_without_a_function_behind_it_is_refused_in_one_line(runtime_engine) -> None:
    """flask's ``cli`` is a ``FlaskGroup`` made by a call, not by decorating a function: nothing
    to read code from (a click command made from a ``def`` is traced: tests/test_click.py)."""
    import flask.cli

    handle = add_target(runtime_engine, "flask.cli:cli")
    assert handle.problem == (
        "flask.cli.cli is a callable flask.cli.FlaskGroup object with no Python function "
        "behind it (no __wrapped__): name its class's method instead (FlaskGroup.__call__)"
    )
    assert handle.functions == [] and type(vars(flask.cli)["cli"]).__name__ == "FlaskGroup"


def test_a_name_that_does_not_exist_is_refused_with_the_nearest_names(runtime_engine) -> None:
    import rich.cells
    import rich.color  # noqa: F401

    assert add_target(runtime_engine, "rich.cells:cell_lenn").problem.startswith(
        "rich.cells has no 'cell_lenn' (nearest: cell_len"
    )
    problem = add_target(runtime_engine, "rich.color:Colour.parse").problem
    assert problem.startswith("rich.color has no 'Colour' (nearest: ") and "Color.parse" in problem


def test_properties_are_refused_naming_what_is_accepted(runtime_engine) -> None:
    problem = add_target(runtime_engine, "runtime_samples.kinds:Base.doubled").problem
    assert problem.startswith("runtime_samples.kinds.Base.doubled is a property (reading it is not a call")


def test_the_python_api_prints_the_refusal_as_one_warning(memory, caplog) -> None:
    import otel_scope
    from otel_scope import api

    try:
        with caplog.at_level(logging.WARNING, logger="otel_scope"):
            handle = otel_scope.trace("runtime_samples.kinds:nosuch")
        assert [r.getMessage() for r in caplog.records] == [
            f"otel-scope: runtime_samples.kinds:nosuch selects nothing: {handle.problem}"
        ]
    finally:
        api.shutdown()


def test_wildcards_reach_decorated_functions_defined_in_the_module(memory, runtime_engine) -> None:
    from rich import cells

    add_target(runtime_engine, "rich.cells:*")
    cells.get_character_cell_size("b")
    assert memory.named("cells.get_character_cell_size")
    assert callable(functools.partial)  # the stdlib names stay untouched


def test_built_in_functions_of_a_compiled_module_get_a_runtime_span(memory, runtime_engine) -> None:
    """black's mypyc-compiled ``format_str`` is a built-in function: wrapped at its attribute,
    no locals (a locals request still gets the span), and restored exactly."""
    import black

    original = vars(black)["format_str"]
    assert type(original).__name__ == "builtin_function_or_method"
    handle = runtime_engine.add(Request(parse_pattern("black:format_str"), capture_locals=None))
    assert black.format_str("x  =  1\n", mode=black.Mode()) == "x = 1\n"
    (span,) = memory.named("black.format_str")
    assert "code.file.path" not in span.attributes and span.attributes["otel_scope.return"] == "'x = 1\\n'"
    assert runtime_engine.active()[0]["installed"] == "wrapper"
    handle.remove()
    assert vars(black)["format_str"] is original


def test_native_methods_of_a_compiled_class_get_a_runtime_span_from_python_callers(
    memory, runtime_engine
) -> None:
    """mypyc compiles black's classes into heap types whose methods are C method descriptors:
    wrapped on the class, so calls that look them up there get a span; restored exactly."""
    import black
    from black.lines import EmptyLineTracker, Line, LinesBlock

    original = vars(LinesBlock)["all_lines"]
    static = vars(EmptyLineTracker)["_get_funcdef_name"]
    assert type(original).__name__ == "method_descriptor"
    handle = runtime_engine.add(Request(parse_pattern("black.lines:*"), capture_locals=False))
    assert "black.lines.LinesBlock.all_lines" in handle.functions
    assert "black.lines.EmptyLineTracker._get_funcdef_name" in handle.functions  # a native staticmethod
    assert not [f for f in handle.functions if "mypyc" in f]  # mypyc's own set-up is left alone
    mode = black.Mode()
    block = LinesBlock(mode=mode, previous_block=None, original_line=Line(mode=mode), before=1)
    assert block.all_lines() == LinesBlock.all_lines(block) == ["\n", ""]
    spans = memory.named("black.lines.LinesBlock.all_lines")
    assert len(spans) == 2 and spans[0].attributes["otel_scope.return"] == "['\\n', '']"
    assert black.format_str("x  =  1\n", mode=mode) == "x = 1\n"  # compiled callers unchanged
    handle.remove()
    assert vars(LinesBlock)["all_lines"] is original and vars(EmptyLineTracker)["_get_funcdef_name"] is static


def test_a_wildcard_leaves_lazy_class_attributes_unresolved(memory, runtime_engine) -> None:
    """six.moves is a class of lazy descriptors (``MovedModule``) whose ``__getattr__`` imports
    the module each stands for (tkinter, dbm.gnu, ...): looking for a compiled callable among
    them must not read their attributes, or a wildcard over six imports modules the program never
    asked for (and stops at the first one missing, selecting nothing)."""
    import six

    lazy = [d for d in vars(six._MovedItems).values() if isinstance(d, six.MovedModule)]
    assert lazy and not [d for d in lazy if "__name__" in vars(d)]
    handle = add_target(runtime_engine, "six:*")
    assert not [d.mod for d in lazy if "__name__" in vars(d)]  # none resolved
    assert six.u("x") == "x"
    assert "six.u" in handle.functions and memory.named("six.u")


def test_a_private_method_is_named_as_in_its_source_by_both_mechanisms(memory, runtime_engine) -> None:
    """``__get_module`` in six's ``_SixMetaPathImporter`` is stored as
    ``_SixMetaPathImporter__get_module``: runtime spans were named after the stored attribute,
    compile-time ones after the source, so one function's calls and counts split in two."""
    import six

    importer = next(i for i in sys.meta_path if type(i).__name__ == "_SixMetaPathImporter")
    handle = add_target(runtime_engine, "six:_SixMetaPathImporter.__get_module")
    assert handle.functions == ["six._SixMetaPathImporter.__get_module"]
    assert importer._SixMetaPathImporter__get_module("six.moves") is six.moves
    (span,) = memory.named("six._SixMetaPathImporter.__get_module")
    function = six._SixMetaPathImporter._SixMetaPathImporter__get_module
    assert span.attributes["code.function.name"] == f"six.{function.__qualname__}"


def test_a_wildcard_selects_def_statements_not_module_attributes_holding_a_lambda(
    memory, runtime_engine
) -> None:
    """sqlalchemy.pool.base holds a lambda at module level (``_NOOP_WEAKREF_CALLBACK``): runtime
    wildcards used to trace it while compile-time capture, which rewrites ``def`` statements,
    left it alone, so one wildcard selected different functions in the two mechanisms."""
    from importlib.metadata import version

    import sqlalchemy.pool.base as base

    if not hasattr(base, "_NOOP_WEAKREF_CALLBACK"):  # older sqlalchemy (the one Python 3.10 gets)
        pytest.skip(f"sqlalchemy {version('sqlalchemy')} has no module-level lambda in pool.base")
    assert base._NOOP_WEAKREF_CALLBACK.__qualname__ == "<lambda>"
    handle = add_target(runtime_engine, "sqlalchemy.pool.base:*")
    assert "sqlalchemy.pool.base._finalize_fairy" in handle.functions  # a def of the module
    assert "sqlalchemy.pool.base._NOOP_WEAKREF_CALLBACK" not in handle.functions
    assert base._NOOP_WEAKREF_CALLBACK(None) is None
    assert not memory.named("sqlalchemy.pool.base._NOOP_WEAKREF_CALLBACK")


def test_class_a_package_re_homed_is_found_in_the_module_that_defines_it(memory, runtime_engine) -> None:
    """pytest sets ``Skipped.__module__ = "builtins"`` (httpx re-homes every public class to
    ``httpx``): the class was taken for one imported from elsewhere, so its methods could not be
    named where they are defined (``httpx._client:Client.send`` 'selects nothing') once the
    package had finished importing, as when another instrumentation imported it first."""
    from _pytest import outcomes

    assert outcomes.Skipped.__module__ == "builtins"
    handle = add_target(runtime_engine, "_pytest.outcomes:Skipped.__init__")
    assert handle.functions == ["_pytest.outcomes.Skipped.__init__"]
    with pytest.raises(outcomes.Skipped):
        pytest.skip("because")
    (span,) = memory.named("outcomes.Skipped.__init__")
    assert span.attributes["otel_scope.arg.msg"] == "'because'"
    handle.remove()
    wildcard = add_target(runtime_engine, "_pytest.outcomes:*")
    assert "_pytest.outcomes.Skipped.__init__" in wildcard.functions


def test_a_types_coroutine_generator_is_traced_and_can_still_be_awaited(memory, runtime_engine) -> None:
    """``asyncio.sleep(0)`` awaits ``asyncio.tasks.__sleep0``, a ``@types.coroutine`` generator:
    traced under ``asyncio.*``, it came back as a plain generator and every ``await
    asyncio.sleep(...)`` raised 'object generator can't be used in 'await' expression'."""
    import asyncio

    handle = add_target(runtime_engine, "asyncio.tasks:__sleep0")

    async def main() -> str:
        await asyncio.sleep(0)
        return "slept"

    assert asyncio.run(main()) == "slept"
    (span,) = memory.named("tasks.__sleep0")
    assert span.attributes["otel_scope.generator.end"] == "exhausted"
    assert span.attributes["otel_scope.yield.count"] == 1
    handle.remove()
