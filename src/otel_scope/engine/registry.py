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
import types
from collections import deque
from collections.abc import Callable
from typing import Any

from otel_scope import _forksafe
from otel_scope.callables import behind_python_wrapper, held_function, is_a
from otel_scope.capture import Serializer, sampling
from otel_scope.config import Settings
from otel_scope.config.patterns import TargetPattern, never_instrumented, parse_pattern
from otel_scope.engine.adapter import CompileTimeAdapter
from otel_scope.engine.discovery import (
    Site,
    explain_no_match,
    iter_sites,
    named_elsewhere,
    site_for_function,
    source_available,
)
from otel_scope.engine.forked import ForkedMatches
from otel_scope.engine.mechanisms import (
    AliasIndex,
    Captured,
    RuntimeInstalled,
    RuntimePlan,
    install_runtime,
)
from otel_scope.runtime import trampoline
from otel_scope.runtime.wrappers import FinishHook, RuntimeProbe, is_ours
from otel_scope.targets.plan import CapturePlan
from otel_scope.targets.planner import Decision, Request, decide_function, production_limits
from otel_scope.vocabulary import Mechanism, mechanism

_log = logging.getLogger("otel_scope")


class Entry:
    """One request, as added by one call; a :class:`Handle` removes it.

    A plain class, as :class:`Applied` is, not a dataclass: creating a dataclass costs every
    start that loads the engine about 0.5 ms (``tests/test_startup_imports.py``).
    """

    __slots__ = ("errors", "function", "id", "request", "sites")

    def __init__(self, id: int, request: Request, function: Any = None) -> None:
        self.id = id
        self.request = request
        self.function = function  # set when a function object (not a pattern) was given
        self.sites: set[tuple[int, str]] = set()
        # function name -> why it could not be instrumented as asked (shown by `otel-scope targets`)
        self.errors: dict[str, str] = {}

    def failure(self) -> str:
        """Why this request could not be applied as asked, in one line ('' when it was)."""
        text = self.request.pattern.text
        errors = sorted(self.errors.items())
        return "; ".join(why if name == text else f"{name}: {why}" for name, why in errors)

    def selects(self, site: Site) -> bool:
        if self.function is not None:
            return site.func is self.function
        return self.request.pattern.matches(site.module, site.qualname)


class Applied:
    """What is currently installed at one site (a plain class, as :class:`Entry` is)."""

    __slots__ = ("capture", "compiled", "entries", "probe", "refused", "runtime", "site")

    def __init__(self, site: Site) -> None:
        self.site = site
        self.probe: RuntimeProbe | None = None
        self.runtime: RuntimeInstalled | None = None  # how the probe is reached
        self.capture: CapturePlan | None = None
        self.compiled: Captured | None = None  # compile-time capture as installed
        self.refused: CapturePlan | None = None  # the capture compile-time refused here: not tried again
        self.entries: set[int] = set()

    @property
    def mechanism(self) -> Mechanism:
        """An entry always has at least one of the two, so this is never ``off``."""
        return mechanism(self.probe is not None, self.capture is not None)

    @property
    def installed_as(self) -> str | None:
        """How the runtime probe is reached: through the function's code, or a wrapper."""
        return self.runtime.how if self.probe is not None and self.runtime is not None else None


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

    @property
    def problem(self) -> str:
        """Why this target instruments nothing now, in one line ('' when it does, or waits)."""
        return "" if self.functions else self._entry.failure()

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


class _EngineLock:
    """The engine's re-entrant lock; the thread that lets go of it last calls ``released``.

    ``released`` applies the modules imported while another thread held it (see
    :meth:`Engine.module_loaded`); it is called after the lock is free, so a module whose import
    gave up on the lock just before is applied by one of the two threads, never by neither.
    """

    __slots__ = ("_released", "_rlock")

    def __init__(self, released: Callable[[], None]) -> None:
        self._rlock = _forksafe.rlock()
        self._released = released

    def __enter__(self) -> None:
        self._rlock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._rlock.release()
        if not self._rlock._is_owned():  # type: ignore[attr-defined]  # the C RLock's, as Condition uses
            self._released()

    def acquire_now(self) -> bool:
        """Take the lock if no other thread holds it; never waits."""
        return self._rlock.acquire(blocking=False)

    def release_only(self) -> None:
        """Let go of what :meth:`acquire_now` took, without calling ``released``: its caller does
        the same work, in a loop."""
        self._rlock.release()


class Engine:
    """Applies requests to functions and restores them; the one owner of all instrumentation."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._forked = ForkedMatches()
        self.serializer = Serializer.from_settings(settings)
        sampling.configure(settings)
        self._lock = _EngineLock(self._apply_imported)
        self._imported: deque[types.ModuleType] = deque()  # imported, waiting for the lock's holder
        self._ids = itertools.count(1)
        # Replaced whole under the lock, never changed in place, so the import hook reads it
        # without the lock: its find_spec runs under Python's global import lock, and a thread
        # holding this lock while it imports (the escalation worker's recompile does) would
        # otherwise wait for that import lock forever, as would find_spec for this lock.
        self._entries: dict[int, Entry] = {}
        self._applied: dict[tuple[int, str], Applied] = {}
        # Compile-time capture and the import hook; the mechanism itself (libcst) is imported
        # only when a plan first needs it. Production mode bounds what it captures.
        self.compile_time = CompileTimeAdapter(
            self, production_limits(settings) if settings.production else settings
        )
        # Run in order after each recorded runtime call (RuntimeProbe.on_finish): exception
        # frames and escalation hook in here, for probes made now and later.
        self._finish_hooks: tuple[FinishHook, ...] = ()
        # Where each loaded module's callables are bound by name, built once per batch of changes
        # (one add(), one import) instead of scanning every module for every function.
        self._aliases: AliasIndex | None = None

    # -- adding and removing -------------------------------------------------------------------
    def add(self, request: Request, function: Any = None) -> Handle:
        """Add one request; applied at once to loaded modules and later to imported ones."""
        with self._lock:
            entry = Entry(next(self._ids), request, function)
            self._entries = {**self._entries, entry.id: entry}
            self._forked.know(request.pattern.text)
            self._reconcile_all(self._sites_for(entry), list(sys.modules.values()))
            if function is None and not entry.sites:
                self._no_match(entry)
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
        return self.add(request._replace(pattern=pattern), function=site.func)

    def _no_match(self, entry: Entry) -> None:
        """Say in one line why a pattern selected nothing in its loaded module (kept in errors)."""
        pattern = entry.request.pattern
        module = sys.modules.get(pattern.module)
        if not is_a(module, types.ModuleType):
            _log.debug("otel-scope: %s waits for its module to be imported", pattern.text)
            return
        if pattern.module_prefix or self.excluded(pattern.module):
            return
        entry.errors[pattern.text] = explain_no_match(module, pattern)  # the caller tells the user

    def remove(self, entry: Entry) -> None:
        with self._lock:
            if entry.id not in self._entries:
                return
            self._entries = {i: e for i, e in self._entries.items() if i != entry.id}
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
        """Apply the requests to a module that has just been imported.

        Never waits for another thread holding the engine's lock: that thread applies it as it
        lets go (:class:`_EngineLock`). An import can run under any lock of the program's (Django's
        ``dictConfig`` imports the handlers it configures holding ``logging``'s lock), and the
        escalation worker, recompiling under the engine's lock, may need that very lock (to log,
        to import): waiting here hung both threads for good. Until then, calls of the module's
        functions are not traced, as before any target named them.
        """
        self._imported.append(module)
        self._apply_imported()

    def _apply_imported(self) -> None:
        """Apply the modules imported so far, unless another thread holds the lock (then it will)."""
        while self._imported:
            if not self._lock.acquire_now():
                return
            try:
                while self._imported:
                    self._apply_module(self._imported.popleft())
            finally:
                self._lock.release_only()

    def _apply_module(self, module: types.ModuleType) -> None:
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
            self.compile_time.leave_accessors_alone(module)

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
                        "installed": applied.installed_as,
                        "calls": applied.probe.calls if applied.probe is not None else None,
                        "targets": patterns,
                    }
                )
            return sorted(rows, key=lambda r: r["function"])

    def unmatched(self) -> list[str]:
        """One line per pattern that has selected nothing so far, saying why where known.

        Entries sharing a pattern's text (a script target and its ``__main__`` alias) count as
        one: the pattern matched if any of them did.
        """
        with self._lock:
            by_text: dict[str, list[Entry]] = {}
            for entry in self._entries.values():
                if entry.function is None:
                    by_text.setdefault(entry.request.pattern.text, []).append(entry)
            lines = []
            for text, entries in sorted(by_text.items()):
                if any(e.sites for e in entries) or self._forked.matched_in_family(text):
                    continue  # selected something here, or in a forked child (a pre-fork server's worker)
                pattern = entries[0].request.pattern
                loaded = sys.modules.get(pattern.module)
                if is_a(loaded, types.ModuleType) and not pattern.module_prefix:
                    why = explain_no_match(loaded, pattern)
                elif pattern.module_prefix and any(pattern.matches_module(n) for n in list(sys.modules)):
                    why = f"no function below {pattern.module} matches it"
                else:
                    why = f"module {pattern.module} was never imported"
                forks = self._forked.children
                if forks:
                    why += f" here, and selected nothing in the {forks} processes forked from here"
                lines.append(f"{text} selected nothing: {why}")
            return lines

    def entries(self) -> list[Entry]:
        """The active entries; never waits for the engine's lock (see ``_entries``)."""
        return list(self._entries.values())

    def probe_for(self, full_name: str) -> RuntimeProbe | None:
        """The runtime probe instrumenting the function ``module.qualname`` now, if any."""
        with self._lock:
            for applied in self._applied.values():
                if applied.site.full_name == full_name and applied.probe is not None:
                    return applied.probe
            return None

    def site_of(self, probe: RuntimeProbe) -> Site | None:
        """The site ``probe`` is installed at (None once it was removed)."""
        with self._lock:
            for applied in self._applied.values():
                if applied.probe is probe:
                    return applied.site
            return None

    def add_finish_hook(self, hook: FinishHook) -> None:
        """Run ``hook`` after every recorded runtime call (probes installed already and those to
        come), after the hooks added before it."""
        with self._lock:
            if hook not in self._finish_hooks:
                self._set_finish_hooks((*self._finish_hooks, hook))

    def remove_finish_hook(self, hook: FinishHook) -> None:
        with self._lock:
            self._set_finish_hooks(tuple(h for h in self._finish_hooks if h != hook))

    def _set_finish_hooks(self, hooks: tuple[FinishHook, ...]) -> None:
        self._finish_hooks = hooks
        for applied in self._applied.values():
            if applied.probe is not None:
                applied.probe.on_finish = hooks

    # -- internals -----------------------------------------------------------------------------
    def _sites_for(self, entry: Entry) -> list[Site]:
        if entry.function is not None:
            site = site_for_function(entry.function)
            return [site] if site is not None else []
        pattern: TargetPattern = entry.request.pattern
        modules = [
            m
            for name, m in list(sys.modules.items())
            if is_a(m, types.ModuleType) and pattern.matches_module(name) and not self.excluded(name)
        ]
        return [
            site
            for m in modules
            for site in iter_sites(m, pattern)
            if not self.excluded(site.module, site.qualname)
        ]

    def _reconcile_all(self, sites: list[Site], alias_modules: list[Any]) -> None:
        """Reconcile a batch of sites: one alias index, one rewrite per module for compile-time.

        A function whose capture plan changes (``--scope-targets`` and ``--scope-locals`` over
        the same functions, added one after the other) has its old capture taken off before the
        batch is rewritten: the batch rewrites each function's original code, and recompiled
        code would be refused as such ("recompiled already"). Between the two, its calls run
        the original body, which never looks for a call marker.
        """
        self._aliases = AliasIndex(alias_modules)
        try:
            decided = []
            wanted = []
            for site in sites:
                applied = self._applied.get(site.key)
                site = applied.site if applied is not None else site  # ours is not the original
                decision = self._decision(site)
                decided.append((site, decision))
                capture = _wanted(applied, decision[1])[1]
                if capture is not None and (applied is None or applied.capture != capture):
                    wanted.append((site, capture))
                    if applied is not None:
                        self._apply_capture(applied, None)
            if len(wanted) > 1:
                self.compile_time.prepare(wanted)
            for site, decision in decided:
                self._reconcile(site, decision)
        finally:
            self._aliases = None
            self.compile_time.discard_prepared()

    def _decision(self, site: Site) -> tuple[list[Entry], Any]:
        """The entries selecting ``site`` and the merged decision for it."""
        selecting = [e for e in self._entries.values() if e.selects(site)]
        return selecting, decide_function(
            [e.request for e in selecting], self.settings, source_available(site.func)
        )

    def _reconcile(self, site: Site, decided: tuple[list[Entry], Any] | None = None) -> None:
        """Bring ``site`` to the merged plan of the entries selecting it (``decided``, when the
        caller has worked it out already)."""
        key = site.key
        applied = self._applied.get(key)
        if applied is not None:
            site = applied.site  # keep the original raw object, not our wrapper
        selecting, decision = decided if decided is not None else self._decision(site)
        want_runtime, want_capture = _wanted(applied, decision)
        if selecting:
            _log.debug("otel-scope plan for %s: %s", site.full_name, "; ".join(decision.reasons))
        if applied is None:
            if not want_runtime and want_capture is None:
                return
            applied = self._applied[key] = Applied(site)
        applied.entries = {e.id for e in selecting}
        for e in selecting:
            if not e.sites:
                self._forked.matched(e.request.pattern.text)
            e.sites.add(key)
            e.errors.pop(site.full_name, None)
            e.errors.pop(e.request.pattern.text, None)  # it selects something now
        try:
            # Atomic per function, as seen by calls in flight: the runtime span's call marker is
            # switched on before recompiled code can look for it, and off only after it is gone,
            # so no call ever gets a second (compile-time) span.
            if want_capture is None:
                self._apply_capture(applied, None)
                self._apply_runtime(applied, want_runtime, selecting, deep=False)
            else:
                self._apply_runtime(applied, want_runtime, selecting, deep=True)
                try:
                    self._apply_capture(applied, want_capture)
                except Exception:
                    # No compile-time span: the runtime one, if any, has no events to carry, and
                    # a locals-only hybrid request gets a runtime span in place of the refused one.
                    applied.refused = want_capture
                    want = want_runtime or decision.runtime_if_refused
                    self._apply_runtime(applied, want, selecting, deep=False)
                    raise
        except Exception as exc:  # never let instrumentation break the program
            spanned = applied.probe is not None
            if not self.compile_time.refused(site.full_name, exc, _named_exactly(selecting), spanned):
                _log.warning("otel-scope: could not instrument %s: %s", site.full_name, exc)
            for e in selecting:
                e.errors[site.full_name] = f"{type(exc).__name__}: {exc}"
        if applied.compiled is not None:  # hybrid: compile-time records the calls the wrapper keeps
            applied.compiled.probe.follows = applied.probe is not None and applied.probe.sampler is not None
        if applied.probe is None and applied.capture is None:
            del self._applied[key]

    def _apply_runtime(self, applied: Applied, want: bool, selecting: list[Entry], deep: bool) -> None:
        site = applied.site
        state_capture = any(e.request.state for e in selecting)
        probe = applied.probe
        if probe is not None and not want:
            probe.enabled = False  # a call already inside the probe finishes normally
            self._uninstall_runtime(applied)
            applied.probe = None
        if want and applied.probe is None:
            current = vars(site.owner).get(site.attr)
            if is_ours(current) or trampoline.installed(_installed_function(site)):
                return  # installed by another Engine (tests): leave it
            only_here = named_elsewhere(site) and any(e.request.pattern.names_function for e in selecting)
            code_target = None if only_here else _code_target(site)
            probe = RuntimeProbe(
                site.raw if code_target is None else code_target,  # how it is called: what is reached
                site.module,
                site.qualname,
                target=",".join(sorted({e.request.pattern.text for e in selecting})),
                serializer=self.serializer,
                capture_args=self.settings.capture_args,
                capture_return=self.settings.capture_return,
                rate_limit=self.settings.rate_limit,
                sampler=sampling.sampler_for(site.full_name, _named_exactly(selecting)),
            )
            probe.on_finish = self._finish_hooks
            probe.deep = deep
            self._install_runtime(applied, probe, code_target, only_here)
        if applied.probe is not None:
            applied.probe.deep = deep
            applied.probe.state = state_capture

    def _install_runtime(
        self, applied: Applied, probe: RuntimeProbe, code_target: types.FunctionType | None, only_here: bool
    ) -> None:
        """Make calls reach ``probe``: through the function's code if given, else a wrapper (at
        this attribute only, if ``only_here``)."""
        applied.probe = probe
        plan = RuntimePlan(probe, code_target, only_here)
        applied.runtime = install_runtime(applied.site, plan, self._aliases)

    @staticmethod
    def _uninstall_runtime(applied: Applied) -> None:
        """Put back exactly what was there before :meth:`_install_runtime`."""
        if applied.runtime is not None:
            applied.runtime.restore()
            applied.runtime = None

    def _apply_capture(self, applied: Applied, want: CapturePlan | None) -> None:
        if want == applied.capture:
            return
        if applied.compiled is not None:
            applied.compiled.restore()
            applied.compiled = None
            applied.capture = None
        if want is not None:
            applied.compiled = self.compile_time.install(applied.site, want)
            applied.capture = want


def _wanted(applied: Applied | None, decision: Decision) -> tuple[bool, CapturePlan | None]:
    """The runtime span and capture to install at a site: the decision's, except that a capture
    compile-time refused there before is not tried again (one refusal, one line; a locals-only
    hybrid request keeps the runtime span that stands in for it, and its call counts)."""
    if applied is not None and decision.capture is not None and decision.capture == applied.refused:
        return decision.runtime or decision.runtime_if_refused, None
    return decision.runtime, decision.capture


def _code_target(site: Site) -> types.FunctionType | None:
    """The function whose code gets the trampoline, or None when the attribute is wrapped.

    A trampoline reaches every reference to the installed function (registries, callbacks,
    partials), so it is used wherever the installed object is a Python function (or the function
    of a classmethod/staticmethod), whatever else the target asks: compile-time capture of the
    same function recompiles the trampoline's copy (hybrid), and state capture takes a method's
    receiver from its first argument; a Python callable object made with ``update_wrapper``
    (pytest's fixtures) gets it on the function behind it, and stays the object it was, as does
    an object keeping the function in an attribute (click's ``Command.callback``), which is
    refused when its function cannot get one. Wrapping stays for objects without code of their
    own (``lru_cache``, ``partial``) and async generators.
    """
    func = _installed_function(site)
    why = trampoline.unsupported(func) if func is not None else None
    if why is not None and func is not site.raw and held_function(site.raw, site.module, site.qualname):
        # A wrapper at the attribute would reach none of the calls (the object calls the
        # function itself) and change the object the program sees: refused, in one line.
        kind = type(site.raw)
        raise ValueError(
            f"held by a {kind.__module__}.{kind.__qualname__} object, which calls it itself, and {why}: "
            "no runtime span reaches it"
        )
    return None if func is None or why is not None else func


def _installed_function(site: Site) -> types.FunctionType | None:
    """The Python function installed at ``site`` (a classmethod's/staticmethod's own, the one
    behind a Python callable object made with ``update_wrapper``: :func:`behind_python_wrapper`,
    or the one such an object keeps in an attribute of its own: :func:`held_function`), if any."""
    raw = site.raw
    func = raw.__func__ if isinstance(raw, (classmethod, staticmethod)) else raw
    if isinstance(func, types.FunctionType):
        return func
    return behind_python_wrapper(func) or held_function(func, site.module, site.qualname)


def _named_exactly(selecting: list[Entry]) -> bool:
    """Whether a user's request names this function itself (not a glob): all its calls are kept,
    and what cannot be done for it is said at WARNING. Escalation's request names the function it
    deepens, but no user asked for that one: its failures are escalation's own (counted there)."""
    return any(
        e.request.by_user and (e.function is not None or e.request.pattern.names_function) for e in selecting
    )
