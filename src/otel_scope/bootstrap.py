"""One way to start otel-scope, whoever starts it: the distro, the Python API, the tests.

:func:`bootstrap` builds a :class:`Scope` from settings: the engine (the registry of targets,
with its serializer and both mechanisms) and the features that act on what the engine
instruments. Before this module the distro, the Python API and the control services each wired
part of the system, so ``otel_scope.trace()`` in a plain program got neither the import hook
(a target for a module imported later was never applied), nor exception frames, nor escalation.

A feature is a small object with ``install(scope)`` and ``uninstall()`` (and, when it holds
threads or locks, ``after_fork_in_child()``). Features observe calls through the span core's
observers (:func:`otel_scope.runtime.tracing.observe`) or the engine's finish hooks
(:meth:`~otel_scope.engine.Engine.add_finish_hook`); neither knows any feature. Front ends
add their own (the control socket and OpAMP, in :mod:`otel_scope.control`) with
:meth:`Scope.add`.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

from otel_scope import _forksafe
from otel_scope.capture import Serializer
from otel_scope.config import Settings
from otel_scope.engine import Engine
from otel_scope.runtime import messages, propagation
from otel_scope.targets.planner import production_limits

if TYPE_CHECKING:  # imported on install, when escalation is on: a runtime-mode start never pays
    from otel_scope.runtime.escalation import Escalator

_log = logging.getLogger("otel_scope")


@runtime_checkable
class Feature(Protocol):
    """Something a :class:`Scope` installs, in order, and uninstalls, in reverse order."""

    name: str

    def install(self, scope: Scope) -> None: ...

    def uninstall(self) -> None: ...


F = TypeVar("F", bound=Feature)


class Scope:
    """otel-scope in one process: the settings, the engine, and the installed features."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.features: list[Feature] = []
        self._lock = _forksafe.rlock()
        self._closed = False
        if hasattr(os, "register_at_fork"):
            weak = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _after_fork_in_child(weak))

    def add(self, feature: F, report: Callable[[str], None] | None = None) -> F | None:
        """Install ``feature``; if it cannot install, say so in one line and carry on without it."""
        with self._lock:
            try:
                feature.install(self)
            except Exception as exc:  # one feature must never stop the others, nor the program
                line = f"no {feature.name} for this process ({type(exc).__name__}: {exc}); "
                line += "the program is not affected."
                if report is not None:
                    report(line)
                else:
                    _log.warning("otel-scope: %s", line)
                return None
            self.features.append(feature)
            return feature

    def feature(self, kind: type[F]) -> F | None:
        """The installed feature of type ``kind``, if any."""
        with self._lock:
            return next((f for f in self.features if isinstance(f, kind)), None)

    def remove(self, *features: Feature) -> None:
        """Uninstall ``features`` (those still installed), last installed first."""
        with self._lock:
            for feature in reversed(list(self.features)):
                if feature in features:
                    self.features.remove(feature)
                    _uninstall(feature)

    def close(self) -> None:
        """Uninstall every feature, last first, then remove every target (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.remove(*self.features)
            self.engine.remove_all()

    def after_fork_in_child(self) -> None:
        for feature in list(self.features):
            hook = getattr(feature, "after_fork_in_child", None)
            if hook is not None:
                try:
                    hook()
                except Exception:
                    _log.debug("otel-scope: %s could not reset after fork", feature.name, exc_info=True)


def _after_fork_in_child(weak: weakref.ref[Scope]) -> None:
    scope = weak()
    if scope is not None and not scope._closed:
        scope.after_fork_in_child()


def _uninstall(feature: Feature) -> None:
    try:
        feature.uninstall()
    except Exception:  # undoing one feature must not leave the others installed
        _log.debug("otel-scope: could not uninstall %s", feature.name, exc_info=True)


# -- the core features ------------------------------------------------------------------------
class ImportHook:
    """Rewrites modules with compile-time plans as they are imported, and applies runtime
    targets to modules imported after the target was added."""

    name = "import hook"

    def install(self, scope: Scope) -> None:
        self._engine = scope.engine
        self._engine.compile_time.install_import_hook()

    def uninstall(self) -> None:
        self._engine.compile_time.uninstall_import_hook()


class ContextPropagation:
    """Carries the OTel context into threads and executors, so their calls join the trace."""

    name = "context propagation"

    def install(self, scope: Scope) -> None:
        propagation.install()

    def uninstall(self) -> None:
        propagation.uninstall()


class MessageCapture:
    """Records hand-offs between threads, tasks and processes (``messages`` setting)."""

    name = "message capture"

    def install(self, scope: Scope) -> None:
        messages.install(scope.engine.serializer)

    def uninstall(self) -> None:
        messages.uninstall()


def escalation_enabled(settings: Settings) -> tuple[bool, str]:
    """Whether escalation runs under ``settings``, and why (shown by ``otel-scope targets list``).

    Decided here, by the feature that installs it, rather than in
    :mod:`otel_scope.runtime.escalation`: that module and the exception frames are then imported
    only when escalation is on, which ``auto`` never is in runtime mode (about 1 ms of its start).
    """
    if settings.escalation == "off":
        return False, "escalation is off"
    if settings.escalation == "on":
        return True, "escalation is on"
    if settings.mode == "off":
        return False, "auto: off because the mode is off"
    if settings.production:
        return False, "auto in production: off (set escalation=on to enable it)"
    if settings.mode == "runtime":
        return False, "auto with mode runtime: off (set escalation=on to enable it)"
    return True, "auto in development: on"


class FailureDetail:
    """Exception frames on failing runtime calls, then escalation (``escalation`` setting).

    Both are engine finish hooks, frames first since they describe the failure escalation
    reacts to. :attr:`escalator` is ``None`` when escalation is off; :attr:`why` says why.
    """

    name = "exception frames and escalation"

    def __init__(self) -> None:
        self.escalator: Escalator | None = None
        self.why = ""
        self._hooks: list[Callable[..., None]] = []

    def install(self, scope: Scope) -> None:
        settings, engine = scope.settings, scope.engine
        on, self.why = escalation_enabled(settings)
        if not on:
            return
        from otel_scope.runtime.escalation import Escalator
        from otel_scope.runtime.exception_frames import ExceptionFrames

        self.escalator = Escalator(engine, settings)
        serializer = (
            Serializer.from_settings(production_limits(settings))
            if settings.production
            else engine.serializer
        )
        frames = ExceptionFrames(serializer, engine.excluded)
        self._engine = engine
        self._hooks = [frames.on_finish, self.escalator.on_finish]
        for hook in self._hooks:
            engine.add_finish_hook(hook)

    def uninstall(self) -> None:
        for hook in self._hooks:
            self._engine.remove_finish_hook(hook)
        self._hooks = []
        if self.escalator is not None:
            self.escalator.close()  # what is still queued is dropped, never recompiled

    def after_fork_in_child(self) -> None:
        if self.escalator is not None:
            self.escalator.after_fork_in_child()


def core_features(settings: Settings) -> list[Feature]:
    """The features every otel-scope process gets from ``settings``, in installation order."""
    features: list[Feature] = [ImportHook(), ContextPropagation()]
    if settings.messages:
        features.append(MessageCapture())
    features.append(FailureDetail())
    return features


def bootstrap(settings: Settings, report: Callable[[str], None] | None = None) -> Scope:
    """otel-scope for this process from ``settings``: the engine and the core features.

    Targets are not applied here (the caller adds the requests it has); ``report`` receives the
    one line a feature that cannot start costs.
    """
    scope = Scope(settings, Engine(settings))
    for feature in core_features(settings):
        scope.add(feature, report)
    return scope
