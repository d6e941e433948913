"""The engine's bridge to the compile-time mechanism and its import hook.

The import hook serves both mechanisms: it rewrites the source of modules with compile-time
plans, and tells the engine when any module a target may select has been imported, so runtime
wrappers are applied to modules imported after the target was added.

Plans are handed to the hook by module *name*, before any source is read: keys are the
qualnames or globs (``*``, ``Class.*``) the patterns name, each already merged with every broader
pattern that covers it, most specific first.
"""

from __future__ import annotations

import ast
import logging
import types
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from otel_scope.callables import is_a
from otel_scope.config import Settings
from otel_scope.runtime.trampoline import body_of
from otel_scope.targets.plan import CapturePlan
from otel_scope.targets.planner import decide_function

if TYPE_CHECKING:
    from otel_scope.engine.discovery import Site
    from otel_scope.engine.mechanisms import Captured
    from otel_scope.engine.registry import Engine

_log = logging.getLogger("otel_scope")


def _classes_defined_in(module: types.ModuleType) -> list[type]:
    """The classes ``module`` defines, nested ones included (each once). Reads types and
    namespaces only (:func:`~otel_scope.callables.is_a`)."""
    found: dict[int, type] = {}
    todo = [v for v in list(vars(module).values()) if is_a(v, type)]
    while todo:
        cls = todo.pop()
        namespace = vars(cls)
        if namespace.get("__module__") == module.__name__ and id(cls) not in found:
            found[id(cls)] = cls
            todo.extend(v for v in list(namespace.values()) if is_a(v, type))
    return list(found.values())


def function_qualnames(source: str) -> list[str]:
    """The ``__qualname__`` of every function defined in ``source`` (cheap ``ast`` pass)."""
    names: list[str] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                names.append(name)
                visit(child, f"{name}.<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return names


class _ProbeSwitch:
    """A function rewritten at import: capture is switched on, and ``restore()`` switches it off."""

    def __init__(self, probe: Any, switch_on: bool = True) -> None:
        self.probe = probe
        if switch_on:
            probe.on = True

    def restore(self) -> None:
        self.probe.on = False


class _Shared:
    """One function's capture, installed once for every name it is reachable under.

    ``RootVisitor.visit_If = visit_Block = _simple_visit``: a wildcard selects each name, and
    they all call one function, which can hold one rewritten code. The first name installs it;
    each name gets a :meth:`use`; the capture is restored when the last use is.
    """

    def __init__(self, inner: Captured) -> None:
        self.inner = inner
        self.probe = inner.probe
        self.users = 0

    def use(self) -> _Use:
        self.users += 1
        return _Use(self)


class _Use:
    """One name's hold on a :class:`_Shared` capture (what the registry keeps per site)."""

    def __init__(self, shared: _Shared) -> None:
        self.shared = shared
        self.probe = shared.probe
        self.released = False

    def restore(self) -> None:
        if self.released:
            return
        self.released = True
        self.shared.users -= 1
        if self.shared.users == 0:
            self.shared.inner.restore()


class CompileTimeAdapter:
    """Installs compile-time capture for the engine; imports the mechanism only when needed."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings
        self._hook: Any = None
        self._configured = False
        self._import_plans: dict[str, dict[str, CapturePlan | None]] = {}
        # Rewritten code made for a batch of functions (see prepare), by (function, plan).
        self._prepared: dict[tuple[int, CapturePlan], Any] = {}
        # What is installed, by (function, plan): one capture for all the names of a function.
        self._installed: dict[tuple[int, CapturePlan], _Shared] = {}

    def _mechanism(self) -> Any:
        from otel_scope import compile_time

        if not self._configured:
            compile_time.configure(self._settings)
            self._configured = True
        return compile_time

    # -- the import hook -----------------------------------------------------------------------
    def plans_for(self, module_name: str) -> Mapping[str, CapturePlan | None] | None:
        """Compile-time plans for a module about to be imported (None: import it unchanged)."""
        engine = self._engine
        if not engine.wants(module_name):
            return None
        requests = [
            e.request
            for e in engine.entries()
            if e.function is None and e.request.pattern.matches_module(module_name)
        ]
        keys = {_key(r.pattern.attr, r.pattern.attr_prefix) for r in requests}
        plans: dict[str, CapturePlan | None] = {}
        # Exclusions first: a key mapped to None is never rewritten (see rewriter.plan_for).
        for p in self._settings.exclude:
            if p.matches_module(module_name) and p.attr is not None:
                plans[_key(p.attr, p.attr_prefix)] = None
        # Most specific first: the hook takes an exact qualname, else the first matching glob.
        for key in sorted(keys, key=lambda k: (k.endswith("*"), -len(k))):
            probe = key[:-1] + "\0" if key.endswith("*") else key  # stands for "any name here"
            covering = [r for r in requests if r.pattern.matches(module_name, probe)]
            capture = decide_function(covering, self._settings, True).capture
            if capture is not None and key not in plans:
                plans[key] = capture
        if not any(plans.values()):
            return None
        self._mechanism()  # the recorder's settings, before the hook rewrites anything
        self._import_plans[module_name] = plans
        return plans

    def install_import_hook(self) -> None:
        if self._hook is None:
            from otel_scope.compile_time.hook import ImportHook  # not the recorder: see plans_for

            engine = self._engine
            self._hook = ImportHook(plans_for=self.plans_for, wants=engine.wants, loaded=engine.module_loaded)
        self._hook.install()

    def uninstall_import_hook(self) -> None:
        if self._hook is not None:
            self._hook.uninstall()

    # -- functions ------------------------------------------------------------------------------
    def prepare(self, wanted: list[tuple[Site, CapturePlan]]) -> None:
        """Rewrite, in one pass per module, the functions of a batch that :meth:`install` will
        recompile: N functions of one module parse it once, not N times."""
        todo = [(site, plan) for site, plan in wanted if self._switch(site, plan) is None]
        unique: dict[int, tuple[Site, CapturePlan]] = {}  # a function under several names: once
        for site, plan in todo:
            unique.setdefault(id(site.func), (site, plan))
        todo = list(unique.values())
        if len(todo) < 2:
            return  # one function: install() recompiles it directly
        made = self._mechanism().prepare([(site.func, plan) for site, plan in todo])
        for (site, plan), prepared in zip(todo, made, strict=True):
            self._prepared[(id(site.func), plan)] = prepared  # a refusal too: never tried twice

    def discard_prepared(self) -> None:
        """Forget what a batch prepared and did not install (its functions' plans changed)."""
        self._prepared.clear()

    def _switch(self, site: Site, plan: CapturePlan) -> _ProbeSwitch | None:
        """The switch of ``site``'s probe if the import hook already rewrote it with ``plan``."""
        imported = self._import_plans.get(site.module)
        if imported is None:
            return None
        func = site.func
        if func is None or self._mechanism().rewriter.plan_for(imported, site.qualname) != plan:
            return None
        probe = self._probe_of(func, site.qualname)
        return _ProbeSwitch(probe, switch_on=False) if probe is not None else None

    def _probe_of(self, func: types.FunctionType, qualname: str) -> Any:
        """The probe ``func``'s rewritten code reads, one of its constants (on a trampoline's
        copy, if the function has one), or ``None`` if it was not rewritten."""
        probe_type = self._mechanism().Probe
        for const in body_of(func).__code__.co_consts:
            if isinstance(const, probe_type) and const.spec.qualname == qualname:
                return const
        return None

    def leave_accessors_alone(self, module: types.ModuleType) -> None:
        """Switch off what the hook rewrote, under a wildcard, into a property's accessors.

        From source only ``@property`` and ``@x.setter``-style decorators say a function is an
        accessor (the rewriter skips those); one made by a property subclass (toolz's
        ``@instanceproperty``) is known only once the module has run. Runtime wildcards never
        select a property, so the same wildcard records none here either; a function named
        exactly (its qualname is a key of the plans) still records.
        """
        plans = self._import_plans.get(module.__name__)
        if not plans:
            return
        for cls in _classes_defined_in(module):
            for value in list(vars(cls).values()):
                if not is_a(value, property):
                    continue
                for func in (value.fget, value.fset, value.fdel):
                    if type(func) is types.FunctionType and func.__qualname__ not in plans:
                        probe = self._probe_of(func, func.__qualname__)
                        if probe is not None:
                            probe.on = False

    def _skipped_at_import(self, site: Site, plan: CapturePlan) -> str | None:
        """Why the import hook left ``site``'s function unrewritten with this plan, if it did:
        recompiling the same source with the same plan would only say it again."""
        imported = self._import_plans.get(site.module)
        results = self._hook.results.get(site.module) if self._hook is not None else None
        if imported is None or results is None:
            return None
        if self._mechanism().rewriter.plan_for(imported, site.qualname) != plan:
            return None
        reason: str | None = results[1].get(site.qualname)
        return reason

    def install(self, site: Site, plan: CapturePlan) -> Captured | None:
        """Make ``site``'s function capture per ``plan`` now (the compile-time mechanism).

        A function the import hook already rewrote with this plan just has its probe switched
        on; one it left alone is refused with its reason; any other is recompiled in place (its
        ``__code__`` swapped).
        """
        key = (id(site.func), plan)
        shared = self._installed.get(key)
        if shared is not None and shared.users > 0:
            return shared.use()  # another name of the same function has it installed
        inner = self._install(site, plan)
        if inner is None:
            return None
        shared = self._installed[key] = _Shared(inner)
        return shared.use()

    def _install(self, site: Site, plan: CapturePlan) -> Captured | None:
        switch = self._switch(site, plan)
        if switch is not None:
            switch.probe.on = True
            return switch
        skipped = self._skipped_at_import(site, plan)
        if skipped is not None:
            raise self._mechanism().skips.Refusal(f"cannot recompile {site.qualname}: {skipped}")
        prepared = self._prepared.pop((id(site.func), plan), None)
        if isinstance(prepared, Exception):
            raise prepared  # the batch's refusal (a RecompileError), as recompile() would raise it
        installed: Captured | None
        if prepared is not None and body_of(prepared.target).__code__ is prepared.made_from:
            installed = prepared.apply()
        else:
            installed = self._mechanism().recompile(site.func, plan)  # None: refused, in one line
        return installed

    # -- what was skipped ------------------------------------------------------------------------
    @staticmethod
    def refused(function: str, exc: Exception, named: bool, spanned: bool) -> bool:
        """Note a function compile-time capture refused (``exc``, from :meth:`install`) with the
        other skips: once, at debug level (a WARNING when ``named`` exactly, saying whether it
        still has a runtime span: ``spanned``), counted for :meth:`skipped_summary`. False when
        ``exc`` is not such a refusal: the caller says it."""
        from otel_scope.compile_time import skips

        return isinstance(exc, skips.Refusal) and skips.note(function, str(exc), named=named, spanned=spanned)

    @staticmethod
    def skipped_mark() -> int:
        """A point in time for :meth:`skipped_summary`."""
        from otel_scope.compile_time import skips

        return skips.mark()

    @staticmethod
    def skipped_summary(since: int = 0) -> str | None:
        """One line counting, by reason, the functions skipped since the last summary (and since
        ``since``, a :meth:`skipped_mark`); None when there were none."""
        from otel_scope.compile_time import skips

        return skips.summary(since)


def _key(attr: str | None, prefix: bool) -> str:
    if attr is None:
        return "*"
    return f"{attr}.*" if prefix else attr
