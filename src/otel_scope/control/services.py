"""The process-level services of a program running under otel-scope, started and stopped together.

``start_process`` (the distro) calls :func:`start_services` once: it installs the runtime hooks
(exception frames and escalation, when :func:`~otel_scope.runtime.escalation.enabled`), starts
the control socket (``control`` setting) and the OpAMP client (``opamp_endpoint`` setting). Each
is independent: one that cannot start costs one line through ``report`` and the others run.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from otel_scope.capture import Serializer
from otel_scope.config import Settings
from otel_scope.control.commands import Controller
from otel_scope.control.opamp import OpampAgent, start_opamp
from otel_scope.control.server import ControlServer
from otel_scope.engine import Engine
from otel_scope.runtime import escalation
from otel_scope.runtime.exception_frames import ExceptionFrames
from otel_scope.targets.planner import production_limits


@dataclass
class Services:
    """What :func:`start_services` started; :meth:`stop` undoes it (idempotent)."""

    controller: Controller
    escalator: escalation.Escalator | None = None
    control: ControlServer | None = None
    opamp: OpampAgent | None = None

    def stop(self) -> None:
        if self.opamp is not None:
            self.opamp.stop()
        if self.control is not None:
            self.control.stop()

    def after_fork_in_child(self, report: Callable[[str], None]) -> None:
        """A forked worker (multiprocessing, a pre-forking server) gets its own control socket.

        The inherited server's thread did not survive the fork; its descriptor is closed without
        touching the parent's socket, and a new socket named after the child's pid is made.
        OpAMP stays with the parent: a child would report under the parent's instance UID.
        """
        self.opamp = None
        if self.escalator is not None:
            self.escalator.after_fork_in_child()
        if self.control is not None:
            self.control.stop()
            self.control = _start_control(self.controller, report)


def start_services(engine: Engine, settings: Settings, report: Callable[[str], None]) -> Services:
    """Start escalation, exception frames, the control socket and OpAMP as the settings say."""
    on, why = escalation.enabled(settings)
    escalator = None
    if on:
        escalator = escalation.Escalator(engine, settings)
        serializer = (
            Serializer.from_settings(production_limits(settings))
            if settings.production
            else engine.serializer
        )
        frames = ExceptionFrames(serializer, engine.excluded)
        engine.set_on_finish(_frames_then_escalation(frames.on_finish, escalator.on_finish))
    services = Services(Controller(settings, escalator, why), escalator)
    if settings.control:
        services.control = _start_control(services.controller, report)
    try:
        services.opamp = start_opamp(settings, why, report)
    except Exception as exc:  # fleet control must never stop the program from starting
        report(
            f"no fleet control for this process ({type(exc).__name__}: {exc}); the program is not affected."
        )
    atexit.register(services.stop)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=lambda: services.after_fork_in_child(report))
    return services


def _start_control(controller: Controller, report: Callable[[str], None]) -> ControlServer | None:
    server = ControlServer(controller.handle)
    try:
        server.start()
    except OSError as exc:
        report(f"no live control for this process ({exc}); the program is not affected.")
        return None
    return server


def _frames_then_escalation(
    frames: Callable[..., None], escalate: Callable[..., None]
) -> Callable[[Any, Any, Any], None]:
    """The probes' hook: exception frames first (they describe this failure), then escalation.

    A failure in the first must not skip the second; calls that did not raise skip the first
    without a call, since this runs after every recorded call.
    """

    def on_finish(probe: Any, span: Any, exc: BaseException | None) -> None:
        if exc is not None:
            with contextlib.suppress(Exception):
                frames(probe, span, exc)
        escalate(probe, span, exc)

    return on_finish
