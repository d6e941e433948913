"""Compile-time mode: libcst rewrites chosen functions so locals, lines and returns become span events.

The engine calls four things (see ``docs/compile-time.md``):

* :func:`configure` with the settings (serializer, limits, event budget);
* :class:`ImportHook` (``plans_for``, ``wants``, ``loaded``) with ``install()``/``uninstall()``,
  for modules imported from now on;
* :func:`recompile` for functions already imported (``Recompiled.restore()`` undoes it);
* :func:`probes` to switch a rewritten module's functions on and off (``probe.on``).

:func:`rewrite_source` is the rewriter itself, used by both paths.
"""

from otel_scope.compile_time.hook import ImportHook, ScopeLoader
from otel_scope.compile_time.recompile import Recompiled, RecompileError, recompile
from otel_scope.compile_time.recorder import Probe, configure, probes
from otel_scope.compile_time.rewriter import RewriteResult, rewrite_source

__all__ = [
    "ImportHook",
    "Probe",
    "RecompileError",
    "Recompiled",
    "RewriteResult",
    "ScopeLoader",
    "configure",
    "probes",
    "recompile",
    "rewrite_source",
]
