"""The two mechanisms behind one protocol: ``install(site, plan) -> Installed``, ``restore()``.

The registry decides *what* each function gets (the planner's merged decision) and hands each
mechanism its part: the runtime mechanism a :class:`RuntimePlan` (which probe, reached how), the
compile-time one a :class:`~otel_scope.targets.plan.CapturePlan`
(:class:`~otel_scope.engine.adapter.CompileTimeAdapter`). Either returns an :class:`Installed`
whose ``restore()`` puts back exactly what was there, so removing a target never needs to know
how it was installed.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any, Protocol

import wrapt

from otel_scope.callables import is_a
from otel_scope.config.patterns import never_instrumented
from otel_scope.engine.discovery import THIS_NAME_ONLY
from otel_scope.runtime import trampoline
from otel_scope.runtime.wrappers import RuntimeProbe
from otel_scope.runtime.wrappers import install as install_wrapper

if TYPE_CHECKING:
    from otel_scope.engine.discovery import Site


class Installed(Protocol):
    """One mechanism's installation at one site."""

    def restore(self) -> None:
        """Put back exactly what was there before (idempotent)."""


class Captured(Installed, Protocol):
    """Compile-time capture as installed: ``probe`` is the recorder probe of the rewritten code
    (``on``, ``follows``), which the registry keeps in step with the runtime probe."""

    probe: Any


class RuntimePlan:
    """What the runtime mechanism installs at a site: ``probe``, reached through the code of
    ``code_target`` (every reference to the function reaches it) or, when that is ``None``,
    through a wrapper at the attribute; ``only_here``: and no other name of the function is
    repointed at the wrapper (an exactly named copied-in function, see ``named_elsewhere``).

    A plain class, as :class:`~otel_scope.engine.discovery.Site` is, for the same reasons.
    """

    __slots__ = ("code_target", "only_here", "probe")

    def __init__(
        self, probe: RuntimeProbe, code_target: types.FunctionType | None, only_here: bool = False
    ) -> None:
        self.probe = probe
        self.code_target = code_target
        self.only_here = only_here


class Trampolined:
    """A probe reached through the function's ``__code__`` (see :mod:`otel_scope.runtime.trampoline`).

    The probe calls the trampoline's copy of the function, so its call marker names the copy's
    code: that is where compile-time capture of the same function runs (hybrid), and it claims
    the runtime span through the marker. A method's receiver is its first argument.
    """

    how = "code trampoline"

    def __init__(self, site: Site, installed: trampoline.Trampoline, probe: RuntimeProbe) -> None:
        self._trampoline = installed
        probe.func = installed.body
        probe.receiver_in_args = isinstance(site.owner, type) and isinstance(site.raw, types.FunctionType)

    def restore(self) -> None:
        self._trampoline.restore()


class Wrapped:
    """A probe reached through a wrapt wrapper at the attribute, plus the other modules' names
    for the function (``from m import f``) repointed at the wrapper, unless ``only_here``."""

    def __init__(
        self, site: Site, probe: RuntimeProbe, aliases: AliasIndex | None, only_here: bool = False
    ) -> None:
        self._site = site
        self.how = THIS_NAME_ONLY if only_here else "wrapper"
        self.wrapper = install_wrapper(site.owner, site.attr, probe)
        self._aliases: list[tuple[dict[str, Any], str]] = []
        if isinstance(site.owner, types.ModuleType) and not only_here:  # the batch's index, else one made now
            index = aliases or AliasIndex(list(sys.modules.values()))
            self._aliases = index.replace(site.raw, self.wrapper, site.owner)

    def restore(self) -> None:
        site = self._site
        wrapt.unwrap_object(site.owner, site.attr, self.wrapper, missing_ok=True)
        for namespace, name in self._aliases:
            if namespace.get(name) is self.wrapper:
                namespace[name] = site.raw
        self._aliases = []


def install_runtime(
    site: Site, plan: RuntimePlan, aliases: AliasIndex | None = None
) -> Trampolined | Wrapped:
    """Make calls of ``site`` reach ``plan.probe``. ``aliases``: the batch's index of names, if
    the caller installs many functions at once (one scan of every module instead of one each)."""
    if plan.code_target is not None:
        return Trampolined(site, trampoline.install(plan.code_target, plan.probe), plan.probe)
    return Wrapped(site, plan.probe, aliases, plan.only_here)


RuntimeInstalled = Trampolined | Wrapped  # each says ``how`` the probe is reached


class AliasIndex:
    """Every name bound to a callable in ``modules``, by the callable's identity.

    Used to point other modules' references to a function (``from m import f``) at its wrapper:
    without this, a target added while the program runs would miss every caller that imported the
    function by name before the target existed. Built with one pass over the modules, so a batch
    of N functions costs one scan, not N. The scan runs on the first :meth:`replace`: most
    batches install only trampolines (a plain function's code is switched in place, so every
    reference reaches it already) and never need one; at start-up that is about 5 ms saved.
    """

    def __init__(self, modules: list[Any]) -> None:
        self._modules: list[Any] | None = modules
        self._where: dict[int, list[tuple[dict[str, Any], str]]] = {}

    def _scan(self, modules: list[Any]) -> None:
        for module in modules:
            namespace = getattr(module, "__dict__", None)
            if not isinstance(namespace, dict) or never_instrumented(getattr(module, "__name__", "")):
                continue
            for name, value in list(namespace.items()):
                if callable(value) and not is_a(value, (type, types.ModuleType)):
                    self._where.setdefault(id(value), []).append((namespace, name))

    def replace(
        self, original: Any, wrapper: Any, home: types.ModuleType
    ) -> list[tuple[dict[str, Any], str]]:
        """Rebind the names of ``original`` outside ``home`` to ``wrapper``; what was rebound."""
        if self._modules is not None:
            modules, self._modules = self._modules, None
            self._scan(modules)
        replaced: list[tuple[dict[str, Any], str]] = []
        for namespace, name in self._where.get(id(original), ()):
            if namespace is not home.__dict__ and namespace.get(name) is original:
                namespace[name] = wrapper
                replaced.append((namespace, name))
        return replaced
