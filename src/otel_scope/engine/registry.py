"""The registry of active targets: one place that applies, tracks and restores everything.

Every request (from settings, ``otel_scope.trace``, the control socket) becomes an entry. For each
function site the entries select, the registry computes the merged plan (a runtime span? which
compile-time capture?) and brings the site to it, now if the module is loaded, or when it is
imported. Removing an entry reconciles its sites again, so removing the last entry restores the
exact original object (ddtrace's "one store that restores everything").
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import wrapt

from otel_scope.capture import Serializer, sampling
from otel_scope.config import Settings
from otel_scope.engine.discovery import Site, iter_sites, site_for_function, source_available
from otel_scope.runtime.wrappers import RuntimeProbe, is_ours
from otel_scope.runtime.wrappers import install as install_wrapper
from otel_scope.targets.patterns import TargetPattern, never_instrumented, parse_pattern
from otel_scope.targets.plan import CapturePlan
from otel_scope.targets.planner import Request, decide_function

_log = logging.getLogger("otel_scope")


@dataclass
class Entry:
    """One request, as added by one call; a :class:`Handle` removes it."""

    id: int
    request: Request
    function: Any = None  # set when a function object (not a pattern) was given
    sites: set[tuple[int, str]] = field(default_factory=set)
    # function name -> why it could not be instrumented as asked (shown by `otel-scope targets`)
    errors: dict[str, str] = field(default_factory=dict)

    def selects(self, site: Site) -> bool:
        if self.function is not None:
            return site.func is self.function
        return self.request.pattern.matches(site.module, site.qualname)


@dataclass
class Applied:
    """What is currently installed at one site."""

    site: Site
    probe: RuntimeProbe | None = None
    wrapper: Any = None
    aliases: list[tuple[dict, str]] = field(default_factory=list)
    capture: CapturePlan | None = None
    compiled: Any = None  # compile-time installation with a .restore()
    entries: set[int] = field(default_factory=set)

    @property
    def mechanism(self) -> str:
        if self.probe is not None and self.capture is not None:
            return "hybrid"
        return "runtime" if self.probe is not None else "compile_time"


class Handle:
    """Returned by :func:`otel_scope.trace`; ``remove()`` undoes exactly what it added."""

    def __init__(self, engine: Engine, entry: Entry) -> None:
        self._engine = engine
        self._entry = entry
        self._removed = False

    @property
    def target(self) -> str:
        return self._entry.request.pattern.text

    @property
    def functions(self) -> list[str]:
        """Qualified names of the functions this handle currently instruments."""
        return self._engine.functions_of(self._entry)

    @property
    def active(self) -> bool:
        return not self._removed

    def remove(self) -> None:
        """Undo this target; idempotent and thread-safe."""
        if self._removed:
            return
        self._removed = True
        self._engine.remove(self._entry)

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        state = "removed" if self._removed else "active"
        return f"<otel_scope.Handle {self.target!r} {state}>"


class Engine:
    """Applies requests to functions and restores them; the one owner of all instrumentation."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.serializer = Serializer.from_settings(settings)
        sampling.configure(settings)
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._entries: dict[int, Entry] = {}
        self._applied: dict[tuple[int, str], Applied] = {}
        self.compile_time: Any = None  # adapter set by the compile-time mechanism (see adopt_compile_time)
        # Called after each recorded runtime call (RuntimeProbe.on_finish): escalation and
        # exception-frame capture hook in here, for probes made now and later.
        self.on_finish: Callable[[RuntimeProbe, Any, BaseException | None], None] | None = None
        # Where each loaded module's callables are bound by name, built once per batch of changes
        # (one add(), one import) instead of scanning every module for every function.
        self._aliases: _AliasIndex | None = None

    # -- adding and removing -------------------------------------------------------------------
    def add(self, request: Request, function: Any = None) -> Handle:
        """Add one request; applied at once to loaded modules and later to imported ones."""
        with self._lock:
            entry = Entry(next(self._ids), request, function)
            self._entries[entry.id] = entry
            self._reconcile_all(self._sites_for(entry), list(sys.modules.values()))
            if function is None and not entry.sites and request.pattern.module not in sys.modules:
                _log.debug("otel-scope: %s waits for its module to be imported", request.pattern.text)
            return Handle(self, entry)

    def add_function(self, func: Any, request: Request) -> Handle:
        """Add a request for one function object (``otel_scope.trace(func)``)."""
        site = site_for_function(func)
        if site is None:
            raise ValueError(
                f"cannot trace {func!r}: otel-scope needs a module-level function or a method of a "
                "module-level class (found through __module__ and __qualname__)"
            )
        pattern = parse_pattern(f"{site.module}:{site.qualname}")
        return self.add(Request(**{**request.__dict__, "pattern": pattern}), function=site.func)

    def remove(self, entry: Entry) -> None:
        with self._lock:
            if self._entries.pop(entry.id, None) is None:
                return
            for key in list(entry.sites):
                applied = self._applied.get(key)
                if applied is not None:
                    applied.entries.discard(entry.id)
                    self._reconcile(applied.site)

    def remove_all(self) -> None:
        """Restore every instrumented function (used at shutdown and by tests)."""
        with self._lock:
            for entry in list(self._entries.values()):
                self.remove(entry)

    # -- imports -------------------------------------------------------------------------------
    def excluded(self, module: str, qualname: str | None = None) -> bool:
        if never_instrumented(module):
            return True
        for p in self.settings.exclude:
            if qualname is None and p.attr is None and p.matches_module(module):
                return True
            if qualname is not None and p.matches(module, qualname):
                return True
        return False

    def wants(self, module_name: str) -> bool:
        """Whether any active request may select functions of ``module_name`` (cheap, by name)."""
        if self.excluded(module_name):
            return False
        return any(
            e.function is None and e.request.pattern.matches_module(module_name)
            for e in self._entries.values()
        )

    def module_loaded(self, module: types.ModuleType) -> None:
        """Apply the requests to a module that has just been imported."""
        with self._lock:
            # Only the module's own package can hold its names already (a submodule importing
            # them while the package's __init__ runs); later imports see the wrapper anyway.
            top = module.__name__.partition(".")[0]
            sites = [
                site
                for entry in list(self._entries.values())
                if entry.function is None and entry.request.pattern.matches_module(module.__name__)
                for site in iter_sites(module, entry.request.pattern)
                if not self.excluded(site.module, site.qualname)
            ]
            package = [m for n, m in list(sys.modules.items()) if n == top or n.startswith(top + ".")]
            self._reconcile_all(sites, package)

    # -- introspection -------------------------------------------------------------------------
    def functions_of(self, entry: Entry) -> list[str]:
        with self._lock:
            return sorted(self._applied[k].site.full_name for k in entry.sites if k in self._applied)

    def active(self) -> list[dict[str, Any]]:
        """One row per instrumented function: name, mechanism, calls seen, patterns."""
        with self._lock:
            rows = []
            for applied in self._applied.values():
                patterns = sorted(
                    self._entries[i].request.pattern.text for i in applied.entries if i in self._entries
                )
                rows.append(
                    {
                        "function": applied.site.full_name,
                        "mechanism": applied.mechanism,
                        "calls": applied.probe.calls if applied.probe is not None else None,
                        "targets": patterns,
                    }
                )
            return sorted(rows, key=lambda r: r["function"])

    def entries(self) -> list[Entry]:
        with self._lock:
            return list(self._entries.values())

    def site_of(self, probe: RuntimeProbe) -> Site | None:
        """The site ``probe`` is installed at (None once it was removed)."""
        with self._lock:
            for applied in self._applied.values():
                if applied.probe is probe:
                    return applied.site
            return None

    def set_on_finish(self, hook: Callable[[RuntimeProbe, Any, BaseException | None], None] | None) -> None:
        """Install ``hook`` on every runtime probe, those installed already and those to come."""
        with self._lock:
            self.on_finish = hook
            for applied in self._applied.values():
                if applied.probe is not None:
                    applied.probe.on_finish = hook

    # -- internals -----------------------------------------------------------------------------
    def _sites_for(self, entry: Entry) -> list[Site]:
        if entry.function is not None:
            site = site_for_function(entry.function)
            return [site] if site is not None else []
        pattern: TargetPattern = entry.request.pattern
        modules = [
            m
            for name, m in list(sys.modules.items())
            if isinstance(m, types.ModuleType) and pattern.matches_module(name) and not self.excluded(name)
        ]
        return [
            site
            for m in modules
            for site in iter_sites(m, pattern)
            if not self.excluded(site.module, site.qualname)
        ]

    def _reconcile_all(self, sites: list[Site], alias_modules: list[Any]) -> None:
        """Reconcile a batch of sites: one alias index, one rewrite per module for compile-time."""
        self._aliases = _AliasIndex(alias_modules)
        try:
            if self.compile_time is not None:
                wanted = []
                for site in sites:
                    applied = self._applied.get(site.key)
                    site = applied.site if applied is not None else site
                    capture = self._decision(site)[1].capture
                    if capture is not None and (applied is None or applied.capture != capture):
                        wanted.append((site, capture))
                if len(wanted) > 1:
                    self.compile_time.prepare(wanted)
            for site in sites:
                self._reconcile(site)
        finally:
            self._aliases = None
            if self.compile_time is not None:
                self.compile_time.discard_prepared()

    def _decision(self, site: Site) -> tuple[list[Entry], Any]:
        """The entries selecting ``site`` and the merged decision for it."""
        selecting = [e for e in self._entries.values() if e.selects(site)]
        return selecting, decide_function(
            [e.request for e in selecting], self.settings, source_available(site.func)
        )

    def _reconcile(self, site: Site) -> None:
        """Bring ``site`` to the merged plan of the entries selecting it."""
        key = site.key
        applied = self._applied.get(key)
        if applied is not None:
            site = applied.site  # keep the original raw object, not our wrapper
        selecting, decision = self._decision(site)
        want_runtime, want_capture = decision.runtime, decision.capture
        if selecting:
            _log.debug("otel-scope plan for %s: %s", site.full_name, "; ".join(decision.reasons))
        if applied is None:
            if not want_runtime and want_capture is None:
                return
            applied = self._applied[key] = Applied(site)
        applied.entries = {e.id for e in selecting}
        for e in selecting:
            e.sites.add(key)
            e.errors.pop(site.full_name, None)
        try:
            # Atomic per function, as seen by calls in flight: the runtime span's call marker is
            # switched on before recompiled code can look for it, and off only after it is gone,
            # so no call ever gets a second (compile-time) span.
            if want_capture is None:
                self._apply_capture(applied, None)
                self._apply_runtime(applied, want_runtime, selecting, deep=False)
            else:
                self._apply_runtime(applied, want_runtime, selecting, deep=True)
                self._apply_capture(applied, want_capture)
        except Exception as exc:  # never let instrumentation break the program
            _log.warning("otel-scope: could not instrument %s: %s", site.full_name, exc)
            for e in selecting:
                e.errors[site.full_name] = f"{type(exc).__name__}: {exc}"
        if applied.compiled is not None:  # hybrid: compile-time records the calls the wrapper keeps
            applied.compiled.probe.follows = applied.probe is not None and applied.probe.sampler is not None
        if applied.probe is None and applied.capture is None:
            del self._applied[key]

    def _apply_runtime(self, applied: Applied, want: bool, selecting: list[Entry], deep: bool) -> None:
        site = applied.site
        if want and applied.probe is None:
            current = vars(site.owner).get(site.attr)
            if is_ours(current):  # installed by another Engine (tests): leave it
                return
            probe = RuntimeProbe(
                site.raw,
                site.module,
                site.qualname,
                target=",".join(sorted({e.request.pattern.text for e in selecting})),
                serializer=self.serializer,
                capture_args=self.settings.capture_args,
                capture_return=self.settings.capture_return,
                rate_limit=self.settings.rate_limit,
                sampler=sampling.sampler_for(site.full_name, _named_exactly(selecting)),
            )
            probe.on_finish = self.on_finish
            probe.deep = deep
            wrapper = install_wrapper(site.owner, site.attr, probe)
            applied.probe, applied.wrapper = probe, wrapper
            if isinstance(site.owner, types.ModuleType):
                aliases = self._aliases or _AliasIndex(list(sys.modules.values()))
                applied.aliases = aliases.replace(site.raw, wrapper, site.owner)
        elif not want and applied.probe is not None:
            applied.probe.enabled = False  # a call already inside the wrapper finishes normally
            wrapt.unwrap_object(site.owner, site.attr, applied.wrapper, missing_ok=True)
            for namespace, name in applied.aliases:
                if namespace.get(name) is applied.wrapper:
                    namespace[name] = site.raw
            applied.probe = applied.wrapper = None
            applied.aliases = []
        if applied.probe is not None:
            applied.probe.deep = deep
            applied.probe.state = any(e.request.state for e in selecting)

    def _apply_capture(self, applied: Applied, want: CapturePlan | None) -> None:
        if want == applied.capture:
            return
        if applied.compiled is not None:
            applied.compiled.restore()
            applied.compiled = None
            applied.capture = None
        if want is not None:
            if self.compile_time is None:
                raise RuntimeError("compile-time capture is not available in this process")
            applied.compiled = self.compile_time.install(applied.site, want)
            applied.capture = want


def _named_exactly(selecting: list[Entry]) -> bool:
    """Whether a request names this function itself (not a glob): all its calls are kept."""
    return any(e.function is not None or e.request.pattern.names_function for e in selecting)


class _AliasIndex:
    """Every name bound to a callable in ``modules``, by the callable's identity.

    Used to point other modules' references to a function (``from m import f``) at its wrapper:
    without this, a target added while the program runs would miss every caller that imported the
    function by name before the target existed. Built with one pass over the modules, so a batch
    of N functions costs one scan, not N.
    """

    def __init__(self, modules: list[Any]) -> None:
        self._where: dict[int, list[tuple[dict, str]]] = {}
        for module in modules:
            namespace = getattr(module, "__dict__", None)
            if not isinstance(namespace, dict) or never_instrumented(getattr(module, "__name__", "")):
                continue
            for name, value in list(namespace.items()):
                if callable(value) and not isinstance(value, (type, types.ModuleType)):
                    self._where.setdefault(id(value), []).append((namespace, name))

    def replace(self, original: Any, wrapper: Any, home: types.ModuleType) -> list[tuple[dict, str]]:
        """Rebind the names of ``original`` outside ``home`` to ``wrapper``; what was rebound."""
        replaced = []
        for namespace, name in self._where.get(id(original), ()):
            if namespace is not home.__dict__ and namespace.get(name) is original:
                namespace[name] = wrapper
                replaced.append((namespace, name))
        return replaced
