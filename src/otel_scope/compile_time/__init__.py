"""Compile-time mode: libcst rewrites chosen functions so locals, lines and returns become span events.

The engine calls four things (see ``docs/compile-time.md``):

* :func:`configure` with the settings (serializer, limits, event budget);
* :class:`ImportHook` (``plans_for``, ``wants``, ``loaded``) with ``install()``/``uninstall()``,
  for modules imported from now on;
* :func:`recompile` for functions already imported (``Recompiled.restore()`` undoes it);
* :func:`probes` to switch a rewritten module's functions on and off (``probe.on``).

:func:`rewrite_source` is the rewriter itself, used by both paths.
"""

from typing import Any

from otel_scope.compile_time.hook import ImportHook, ScopeLoader

# libcst costs ~85 ms to import: the rewriter (and recompile, which uses it) load on first use,
# so a process whose modules all come from the cache, or that only uses runtime mode, never pays.
# The recorder too: runtime mode installs the import hook (to apply targets to modules imported
# later) and never records a compile-time call.
_LAZY = {
    "Probe": "recorder",
    "configure": "recorder",
    "probes": "recorder",
    "recorder": None,
    "RewriteResult": "rewriter",
    "rewrite_source": "rewriter",
    "rewriter": None,
    "Recompiled": "recompile",
    "RecompileError": "recompile",
    "recompile": "recompile",
    "prepare": "recompile",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    source = _LAZY[name] or name
    module = importlib.import_module(f"{__name__}.{source}")
    # Bind every name this submodule provides: importing submodule "recompile" has just bound
    # the *module* to the package attribute "recompile", which the function must replace.
    for lazy, where in _LAZY.items():
        if where == source:
            globals()[lazy] = getattr(module, lazy)
    return globals().get(name, module)


__all__ = [
    "ImportHook",
    "Probe",
    "RecompileError",
    "Recompiled",
    "RewriteResult",
    "ScopeLoader",
    "configure",
    "prepare",
    "probes",
    "recompile",
    "rewrite_source",
]
