"""Applying targets to modules imported later: a small ``sys.meta_path`` finder.

The finder decides from the module *name* whether a module matters (one call to ``wants``) and
steps aside otherwise, so untargeted imports pay one function call. For a module that matters it
lets the other finders find it as usual and wraps the loader so that, after the module's code has
run, ``loaded(module)`` applies the targets to it. Everything else the loader offers
(``get_source`` for ``inspect``, ``get_code`` for ``python -m``, resource readers) is forwarded.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
import threading
import types
from collections.abc import Callable, Sequence
from typing import Any

_log = logging.getLogger("otel_scope")


class _NotifyingLoader:
    """Runs the original loader, then tells the engine the module is ready."""

    def __init__(self, loader: Any, loaded: Callable[[types.ModuleType], None]) -> None:
        self._otel_scope_loader = loader
        self._otel_scope_loaded = loaded

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        create = getattr(self._otel_scope_loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: types.ModuleType) -> None:
        self._otel_scope_loader.exec_module(module)
        try:
            self._otel_scope_loaded(module)
        except Exception:  # a target that fails to apply must not fail the user's import
            _log.debug("otel-scope could not apply targets to %s", module.__name__, exc_info=True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._otel_scope_loader, name)


class ImportWatcher(importlib.abc.MetaPathFinder):
    """Notifies ``loaded`` after each module that ``wants`` accepts has been executed."""

    def __init__(self, wants: Callable[[str], bool], loaded: Callable[[types.ModuleType], None]) -> None:
        self._wants = wants
        self._loaded = loaded
        self._local = threading.local()

    def install(self) -> None:
        """Put the watcher first on ``sys.meta_path`` (idempotent)."""
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def uninstall(self) -> None:
        while self in sys.meta_path:
            sys.meta_path.remove(self)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        busy: set[str] = self._local.__dict__.setdefault("busy", set())
        if fullname in busy:
            return None
        try:
            if not self._wants(fullname):
                return None
        except Exception:
            return None
        busy.add(fullname)
        try:
            spec = _find_with_others(self, fullname, path, target)
        finally:
            busy.discard(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _NotifyingLoader(spec.loader, self._loaded)
        return spec


def _find_with_others(
    me: object, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None
) -> importlib.machinery.ModuleSpec | None:
    for finder in sys.meta_path:
        if finder is me:
            continue
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        spec = find(fullname, path, target)
        if spec is not None:
            return spec
    return None
