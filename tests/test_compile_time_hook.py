"""The import hook: rewrites targeted modules only, and keeps Python's import machinery intact."""

from __future__ import annotations

import importlib
import importlib.machinery
import inspect
import json
import logging
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from otel_scope.compile_time import ImportHook, ScopeLoader, configure
from otel_scope.config.settings import Settings
from otel_scope.targets.plan import CapturePlan
from rewrite_samples.support import memory_spans, var_events

SHOP = """\
\"\"\"A small module to instrument.\"\"\"


def check_stock(items):
    count = len(items)
    total = sum(
        items
    )
    return count, total
"""

CLI = """\
from hookpkg.shop import check_stock

if __name__ == "__main__":
    print("result", check_stock([1, 2, 3]))
"""


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A fresh package ``hookpkg`` (shop, cli) on sys.path, removed afterwards."""
    root = tmp_path / "src"
    pkg = root / "hookpkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "shop.py").write_text(SHOP)
    (pkg / "cli.py").write_text(CLI)
    (pkg / "plain.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    yield root
    for name in [n for n in sys.modules if n == "hookpkg" or n.startswith("hookpkg.")]:
        del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture
def hook():
    asked: list[str] = []
    loaded: list[str] = []

    def plans_for(name):
        asked.append(name)
        return (
            {"check_stock": CapturePlan(target="hookpkg.shop:check_stock")}
            if name == "hookpkg.shop"
            else None
        )

    hook = ImportHook(
        plans_for, wants=lambda name: name.startswith("hookpkg"), loaded=lambda m: loaded.append(m.__name__)
    )
    hook.asked, hook.loaded_names = asked, loaded
    hook.install()
    yield hook
    hook.uninstall()


def test_a_targeted_module_is_rewritten_and_emits_events_at_original_lines(package, hook):
    configure(Settings())
    with memory_spans() as exporter:
        shop = importlib.import_module("hookpkg.shop")
        assert shop.check_stock([1, 2]) == (2, 3)
    (span,) = exporter.get_finished_spans()
    assert span.name == "hookpkg.shop.check_stock"
    assert var_events(span, "count") == [(5, "2")]
    assert var_events(span, "total") == [(6, "3")]
    assert isinstance(shop.__loader__, ScopeLoader)
    assert hook.results["hookpkg.shop"] == (["check_stock"], {})


def test_identical_modules_in_two_directories_each_name_their_own_file(package, hook, tmp_path, monkeypatch):
    """The rewrite cache is keyed by path: b's code must not name a/shop.py, even once a/ is gone."""
    import shutil

    configure(Settings())
    first = importlib.import_module("hookpkg.shop").check_stock.__code__.co_filename
    other = tmp_path / "other"
    shutil.copytree(package, other)
    shutil.rmtree(package)
    for name in [n for n in sys.modules if n == "hookpkg" or n.startswith("hookpkg.")]:
        del sys.modules[name]
    monkeypatch.syspath_prepend(str(other))
    importlib.invalidate_caches()
    with memory_spans() as exporter:
        shop = importlib.import_module("hookpkg.shop")
        with pytest.raises(TypeError) as info:
            shop.check_stock(None)
    expected = str(other / "hookpkg" / "shop.py")
    assert first == str(package / "hookpkg" / "shop.py") and hook.cache_hits == 0
    assert shop.check_stock.__code__.co_filename == expected
    assert info.traceback[-1].path == Path(expected)
    (span,) = exporter.get_finished_spans()
    assert span.attributes["code.file.path"] == expected


def test_untargeted_imports_are_decided_by_name_and_left_alone(package, hook):
    plain = importlib.import_module("hookpkg.plain")
    json_again = importlib.import_module("json.decoder")
    assert "hookpkg.plain" in hook.asked
    assert isinstance(plain.__loader__, ScopeLoader)  # wanted: wrapped only to report "loaded"
    assert plain.__loader__.plans is None
    assert not isinstance(json_again.__loader__, ScopeLoader)
    assert "hookpkg.plain" in hook.loaded_names


def test_inspect_getsource_and_loader_attributes_still_work(package, hook):
    shop = importlib.import_module("hookpkg.shop")
    assert inspect.getsource(shop.check_stock) == SHOP[SHOP.index("def check_stock") :]
    assert inspect.getsource(shop) == SHOP
    assert shop.__loader__.is_package("hookpkg.shop") is False
    assert shop.__loader__.get_filename("hookpkg.shop").endswith("shop.py")


def test_the_users_pycache_never_holds_instrumented_code(package, hook, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    importlib.import_module("hookpkg.shop")
    importlib.import_module("hookpkg.plain")
    cached = list((package / "hookpkg" / "__pycache__").glob("*.pyc"))
    assert cached  # untargeted modules are cached by Python as usual
    assert not [p for p in cached if p.name.startswith("shop.")]
    assert all(b"_otel_scope" not in p.read_bytes() for p in cached)


def test_install_and_uninstall_are_idempotent():
    hook = ImportHook(lambda name: None)
    hook.install()
    hook.install()
    assert sys.meta_path.count(hook) == 1
    hook.uninstall()
    hook.uninstall()
    assert hook not in sys.meta_path


def test_zip_imports_are_left_alone_with_a_debug_message(tmp_path, monkeypatch, caplog):
    archive = tmp_path / "zipped.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("zipmod.py", "def f():\n    x = 1\n    return x\n")
    monkeypatch.syspath_prepend(str(archive))
    hook = ImportHook(lambda name: {"f": CapturePlan()} if name == "zipmod" else None)
    hook.install()
    try:
        with caplog.at_level(logging.DEBUG, logger="otel_scope"):
            module = importlib.import_module("zipmod")
        assert module.f() == 1
        assert not isinstance(module.__loader__, ScopeLoader)
        assert any("zipmod" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records)
    finally:
        hook.uninstall()
        sys.modules.pop("zipmod", None)


def test_namespace_packages_import_and_their_modules_are_rewritten(tmp_path, monkeypatch):
    (tmp_path / "nsroot" / "nspkg").mkdir(parents=True)
    (tmp_path / "nsroot" / "nspkg" / "mod.py").write_text("def g(a):\n    b = a * 2\n    return b\n")
    monkeypatch.syspath_prepend(str(tmp_path / "nsroot"))
    hook = ImportHook(
        lambda name: {"g": CapturePlan()} if name == "nspkg.mod" else None, wants=lambda n: True
    )
    hook.install()
    configure(Settings())
    try:
        with memory_spans() as exporter:
            module = importlib.import_module("nspkg.mod")
            assert module.g(2) == 4
        (span,) = exporter.get_finished_spans()
        assert var_events(span, "b") == [(2, "4")]
    finally:
        hook.uninstall()
        for name in ("nspkg.mod", "nspkg"):
            sys.modules.pop(name, None)


# --- in a fresh interpreter -------------------------------------------------------------------

SITECUSTOMIZE = """\
import atexit, json, os, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otel_scope.compile_time import ImportHook
from otel_scope.targets.plan import CapturePlan

_exporter = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(_exporter))
trace.set_tracer_provider(_provider)
_modules = os.environ["HOOK_MODULES"].split(",")
_hook = ImportHook(lambda name: {"*": CapturePlan()} if name in _modules else None)
_hook.install()


@atexit.register
def _report():
    finished = _exporter.get_finished_spans()
    spans = [{"name": s.name, "events": [dict(e.attributes) for e in s.events]} for s in finished]
    print("REPORT " + json.dumps({"spans": spans, "cache_hits": _hook.cache_hits}))
"""


def _run(args, package, tmp_path, modules):
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(site), str(package)]),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        HOOK_MODULES=modules,
        PYTHONDONTWRITEBYTECODE="",
    )
    done = subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    report = next(line for line in done.stdout.splitlines() if line.startswith("REPORT "))
    return done.stdout, json.loads(report[len("REPORT ") :])


def test_python_dash_m_runs_the_rewritten_module(package, tmp_path):
    (package / "hookpkg" / "runme.py").write_text(
        "def main():\n    answer = 6 * 7\n    return answer\n\n"
        "if __name__ == '__main__':\n    print('answer', main())\n"
    )
    out, report = _run(["-m", "hookpkg.runme"], package, tmp_path, "hookpkg.runme")
    assert "answer 42" in out
    (span,) = report["spans"]
    assert span["name"] == "hookpkg.runme.main"
    assert span["events"][0]["otel_scope.var.answer"] == "42"
    assert span["events"][0]["code.line.number"] == 2


def test_a_second_start_uses_the_cache(package, tmp_path):
    args = ["-c", "from hookpkg.shop import check_stock; print(check_stock([4]))"]
    _, first = _run(args, package, tmp_path, "hookpkg.shop")
    _, second = _run(args, package, tmp_path, "hookpkg.shop")
    assert (first["cache_hits"], second["cache_hits"]) == (0, 1)
    assert first["spans"] == second["spans"] or [s["name"] for s in first["spans"]] == [
        s["name"] for s in second["spans"]
    ]
    assert list((tmp_path / "cache" / "otel-scope").rglob("hookpkg.shop-*.bin"))


def test_pytest_assertion_rewriting_still_works_for_test_modules(package, tmp_path):
    tests = tmp_path / "usertests"
    tests.mkdir()
    (tests / "test_user.py").write_text(
        textwrap.dedent(
            """\
            from hookpkg.shop import check_stock

            def test_fails():
                result = check_stock([1, 2])
                assert result == (3, 3)
            """
        )
    )
    env = dict(os.environ)
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env.update(
        PYTHONPATH=os.pathsep.join([str(site), str(package)]),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        HOOK_MODULES="hookpkg.shop,test_user",
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tests,
    )
    assert "1 failed" in done.stdout
    assert "At index 0 diff: 2 != 3" in done.stdout  # pytest's assertion introspection
    report = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("REPORT "))[7:])
    assert [s["name"] for s in report["spans"]] == ["hookpkg.shop.check_stock"]


def test_loader_is_a_real_source_loader_underneath(package, hook):
    shop = importlib.import_module("hookpkg.shop")
    assert isinstance(shop.__loader__.loader, importlib.machinery.SourceFileLoader)
    assert Path(shop.__spec__.origin).name == "shop.py"


def test_opentelemetry_instrument_in_compile_time_mode_sends_locals_over_otlp(otlp_receiver, tmp_path):
    from scope_run import run_instrumented, run_plain

    app = Path(__file__).resolve().parent / "rewrite_samples" / "ct_app"
    plain = run_plain("app.py", tmp_path, cwd=app)
    flags = ["--scope-mode", "compile_time", "--scope-locals", "ctshop.inventory:check_stock"]
    run = run_instrumented("app.py", flags, otlp_receiver.env("grpc"), tmp_path, cwd=app)
    assert (run.returncode, run.stdout) == (plain.returncode, plain.stdout), run.stderr
    spans = otlp_receiver.wait_for(lambda s: sum(x.name == "ctshop.inventory.check_stock" for x in s) == 2)
    first, second = sorted(
        (s for s in spans if s.name == "ctshop.inventory.check_stock"), key=lambda s: s.start_time_ns
    )
    source = (app / "ctshop" / "inventory.py").read_text().splitlines()

    def line(marker):
        return next(i for i, text in enumerate(source, 1) if f"# @{marker}" in text)

    def assigned(span):
        return [
            (e.attributes["code.line.number"], name[len("otel_scope.var.") :], value)
            for e in span.events_named("otel_scope.locals")
            for name, value in e.attributes.items()
            if name.startswith("otel_scope.var.") and not name.endswith(".type")
        ]

    assert assigned(second)[:3] == [
        (line("available"), "available", "1"),
        (line("reserved_end") - 3, "reserved", "1"),
        (line("attempt"), "attempt", "0"),
    ]
    assert (line("attempt") + 1, "missing", "3") in assigned(second)
    assert all(e.attributes["otel_scope.mechanism"] == "compile_time" for e in first.events)
    assert first.attributes["otel_scope.mechanism"] == "compile_time"


def test_runtime_only_runs_never_import_libcst(tmp_path) -> None:
    """The rewriter (and libcst, ~85 ms to import) loads only when a module is rewritten."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from otel_scope.config import Settings\n"
        "from otel_scope.config import parse_pattern\n"
        "from otel_scope import api\n"
        "api.start(Settings(mode='runtime', targets=(parse_pattern('wave:*'),)))\n"
        "import wave\n"
        "assert 'libcst' not in sys.modules, 'libcst imported'\n"
        "assert 'otel_scope.compile_time.rewriter' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_an_excluded_function_is_not_rewritten_under_a_module_wide_locals_target(
    tmp_path, monkeypatch
) -> None:
    from otel_scope.config import parse_pattern
    from otel_scope.engine import Engine

    (tmp_path / "exclmod.py").write_text(
        "def kept(x):\n    y = x + 1\n    return y\n\n\ndef left(x):\n    return x\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    settings = Settings(locals=(parse_pattern("exclmod:*"),), exclude=(parse_pattern("exclmod:left"),))
    engine = Engine(settings)
    from otel_scope.targets.planner import requests_from_settings

    for request in requests_from_settings(settings):
        engine.add(request)
    engine.compile_time.install_import_hook()
    try:
        import exclmod

        from otel_scope.compile_time.recorder import Probe

        assert any(type(c) is Probe for c in exclmod.kept.__code__.co_consts)  # rewritten
        assert not any(type(c) is Probe for c in exclmod.left.__code__.co_consts)  # left alone
    finally:
        engine.compile_time.uninstall_import_hook()
        engine.remove_all()
        sys.modules.pop("exclmod", None)


def test_recompiling_a_rewritten_function_checks_the_source_it_was_rewritten_from(package, hook):
    import linecache

    from otel_scope.compile_time import RecompileError, recompile

    configure(Settings())
    shop = importlib.import_module("hookpkg.shop")
    recompile(shop.check_stock, CapturePlan(level="lines")).restore()  # unedited: accepted
    path = package / "hookpkg" / "shop.py"
    path.write_text(SHOP.replace("len(items)", "len(items) * 9"))
    linecache.checkcache(str(path))
    with pytest.raises(RecompileError, match="no longer matches the running code"):
        recompile(shop.check_stock, CapturePlan(level="lines"))
    assert shop.check_stock([1, 2]) == (2, 3)


_CURRY = """\
import toolz
add = toolz.curry(lambda a, b: a + b)
for _ in range(3):
    add.args, add.keywords, add.func  # reads of toolz's @instanceproperty attributes
print(add(1)(2))
"""


@pytest.mark.parametrize(
    ("pattern", "accessors_recorded"),
    [("toolz.functoolz:*", set()), ("toolz.functoolz:curry.args", {"toolz.functoolz.curry.args"})],
    ids=["wildcard", "named-exactly"],
)
def test_a_wildcard_records_no_property_subclass_accessor_as_runtime_wildcards_do(
    tmp_path: Path, pattern: str, accessors_recorded: set[str]
) -> None:
    """toolz's ``@instanceproperty`` makes a property subclass, which the source cannot show:
    the hook rewrote its getters, and every attribute read recorded a call that a runtime
    wildcard would never select. Once the module has run they are known, and left alone."""
    from otel_scope.store import SpanStore
    from scope_run import BIN, base_env, run_tree

    cli = [str(BIN / "opentelemetry-instrument"), "--scope-mode", "compile_time", "--scope-locals", pattern]
    env = base_env(tmp_path, {"OTEL_TRACES_EXPORTER": "otel_scope", "OTEL_SCOPE_CONTROL": "false"})
    run = run_tree([*cli, sys.executable, "-c", _CURRY], tmp_path, env, timeout=60)
    assert (run.returncode, run.stdout) == (0, "3\n"), run.stderr
    assert run.session_trace_id is not None
    trace = SpanStore(tmp_path / "store.sqlite3", read_only=True).get_trace(run.session_trace_id)
    assert trace is not None
    names = {span.name for span in trace.spans}
    accessors = {f"toolz.functoolz.curry.{a}" for a in ("args", "keywords", "func")}
    assert names & accessors == accessors_recorded
    if pattern.endswith("*"):
        assert {"toolz.functoolz.curry.__init__", "toolz.functoolz.curry.__call__"} <= names
