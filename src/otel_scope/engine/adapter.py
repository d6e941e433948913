"""The engine's bridge to the compile-time mechanism and the import hook.

The import hook serves both mechanisms: it rewrites the source of modules with compile-time
plans, and tells the engine when any module a target may select has been imported, so runtime
wrappers are applied to modules imported after the target was added.
"""

from __future__ import annotations

import ast
import importlib.util
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from otel_scope.config import Settings
from otel_scope.engine.imports import ImportWatcher
from otel_scope.targets.plan import CapturePlan

if TYPE_CHECKING:
    from otel_scope.engine.discovery import Site
    from otel_scope.engine.registry import Engine

_log = logging.getLogger("otel_scope")


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


class CompileTimeAdapter:
    """Installs compile-time capture for the engine; imports the mechanism only when needed."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings
        self._hook: Any = None
        self._configured = False

    def _mechanism(self) -> Any:
        from otel_scope import compile_time

        if not self._configured:
            compile_time.configure(self._settings)
            self._configured = True
        return compile_time

    # -- the import hook -----------------------------------------------------------------------
    def plans_for(self, module_name: str) -> Mapping[str, CapturePlan] | None:
        """Compile-time plans for a module about to be imported (None: import it unchanged)."""
        engine = self._engine
        if not engine.wants(module_name):
            return None
        if not any(
            e.function is None
            and e.request.pattern.matches_module(module_name)
            and (e.request.capture_locals is not False or e.request.lines or not e.request.runtime)
            for e in engine.entries()
        ):
            return None
        try:
            spec = importlib.util.find_spec(module_name)
            source = spec.loader.get_source(module_name) if spec and spec.loader else None  # type: ignore[union-attr]
        except Exception:
            source = None
        if not source:
            return None
        plans = engine.capture_plans(module_name, function_qualnames(source))
        return plans or None

    def install_import_hook(self) -> None:
        if self._hook is None:
            self._hook = ImportWatcher(self._engine.wants, self._engine.module_loaded)
        self._hook.install()

    def uninstall_import_hook(self) -> None:
        if self._hook is not None:
            self._hook.uninstall()

    # -- already-imported functions ------------------------------------------------------------
    def install(self, site: Site, plan: CapturePlan) -> Any:
        """Make ``site``'s function capture per ``plan`` now; returns an object with ``restore()``."""
        return self._mechanism().recompile(site.func, plan)
