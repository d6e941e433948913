"""Targets in the script being run (``python main.py`` under ``opentelemetry-instrument``).

The script is never imported: the interpreter runs it as ``__main__``, after otel-scope has
started and before any of its functions exist, so neither the import hook nor a scan at start-up
can see them. A target may name it as ``__main__:f`` or by its module name (``main:f`` for
``main.py``, ``pkg.tool:f`` for ``python -m pkg.tool``); both are pointed at ``__main__``.

:class:`ScriptWatcher` follows only the script's top-level frame (a trace function that returns
at once for every other frame): each time that code has defined new names, the targets are
applied to ``__main__``, so a function is traced before its first call. Tracing stops as soon as
every exact target matched, or when the script first calls one of its own functions (its
program has started: ``if __name__ == "__main__": main()``), so the program itself runs untraced.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import types
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from otel_scope.targets.planner import Request

if TYPE_CHECKING:
    from otel_scope.engine.registry import Engine

_log = logging.getLogger("otel_scope")
MAIN = "__main__"


def script_module_names(orig_argv: list[str] | None = None) -> set[str]:
    """The names a user may give the script being run: ``__main__`` and its module name."""
    argv = orig_argv if orig_argv is not None else list(getattr(sys, "orig_argv", sys.argv))
    names = {MAIN}
    if "-m" in argv[:-1]:
        names.add(argv[argv.index("-m") + 1])
    elif "-c" not in argv:
        scripts = [a for a in argv[1:] if a.endswith(".py")]
        if scripts:
            names.add(os.path.splitext(os.path.basename(scripts[0]))[0])
    return names


def script_requests(requests: Iterable[Request], names: set[str]) -> list[Request]:
    """The requests naming the script by its module name, pointed at ``__main__`` as well."""
    aliased = []
    for request in requests:
        pattern = request.pattern
        if pattern.module in names and pattern.module != MAIN and not pattern.module_prefix:
            aliased.append(request._replace(pattern=pattern._replace(module=MAIN)))
    return aliased


class ScriptWatcher:
    """Applies ``__main__`` targets while the script's top-level code defines its functions."""

    def __init__(self, engine: Engine, requests: list[Request]) -> None:
        self._engine = engine
        # Tracing may stop once these all matched (never while a wildcard waits for more).
        exact = all(r.pattern.names_function for r in requests)
        self._exact = {str(r.pattern.attr) for r in requests} if exact else set()
        module = sys.modules.get(MAIN)
        self._namespace = vars(module) if isinstance(module, types.ModuleType) else None
        self._seen = -1

    def start(self) -> bool:
        """Follow the script's top level; False (with a debug note) when that cannot be done."""
        if self._namespace is None:
            return False
        if sys.gettrace() is not None:  # a debugger or coverage owns tracing: do not displace it
            _log.debug("otel-scope: a trace function is set; targets in the script apply when it is done")
            return False
        sys.settrace(self._global)
        return True

    def stop(self) -> None:
        if sys.gettrace() == self._global:
            sys.settrace(None)

    # -- trace functions ----------------------------------------------------------------------
    def _global(self, frame: types.FrameType, event: str, arg: Any) -> Any:
        if frame.f_globals is not self._namespace:
            return None
        code = frame.f_code
        if code.co_name == "<module>":
            return self._local
        if code.co_flags & inspect.CO_OPTIMIZED and not code.co_name.startswith("<"):
            self._apply()  # the script calls a function of its own: its program has started
            self.stop()
        return None  # class bodies and comprehensions of the top level

    def _local(self, frame: types.FrameType, event: str, arg: Any) -> Any:
        if event == "line" and len(self._namespace or ()) != self._seen:
            self._apply()
        elif event == "return":
            self._apply()
            self.stop()
        return self._local

    def _apply(self) -> None:
        namespace = self._namespace
        if namespace is None:
            return
        self._seen = len(namespace)
        self._engine.module_loaded(sys.modules[MAIN])
        if self._exact and self._engine_has_all():
            self.stop()

    def _engine_has_all(self) -> bool:
        active = {row["function"] for row in self._engine.active()}
        return all(f"{MAIN}.{name}" in active for name in self._exact)
