"""Live control of a running program, as two features of its :class:`~otel_scope.bootstrap.Scope`.

``start_process`` (the distro) calls :func:`start_services` once: it adds the control socket
(``control`` setting) and the OpAMP client (``opamp_endpoint`` setting) to the scope. Each is
independent: one that cannot start costs one line through ``report`` and the other runs. Both
answer through one :class:`~otel_scope.control.commands.Controller`, which reads the
escalation state from the scope's :class:`~otel_scope.bootstrap.FailureDetail` feature.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable
from typing import TYPE_CHECKING

from otel_scope.bootstrap import FailureDetail, Feature, Scope
from otel_scope.control.commands import Controller
from otel_scope.control.server import ControlServer

if TYPE_CHECKING:  # imported on install: only a process with an OpAMP endpoint pays for it
    from otel_scope.control.opamp import OpampAgent


class ControlChannel:
    """The Unix socket ``otel-scope targets ... --pid`` talks to.

    A forked worker (multiprocessing, a pre-forking server) gets its own: the inherited server's
    thread did not survive the fork, so its descriptor is closed without touching the parent's
    socket, and a new socket named after the child's pid is made.
    """

    name = "live control"

    def __init__(self, controller: Controller, report: Callable[[str], None]) -> None:
        self._controller = controller
        self._report = report
        self.server: ControlServer | None = None

    def install(self, scope: Scope) -> None:
        server = ControlServer(self._controller.handle)
        server.start()  # OSError: Scope.add reports it in one line
        self.server = server

    def uninstall(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def after_fork_in_child(self) -> None:
        self.uninstall()
        server = ControlServer(self._controller.handle)
        try:
            server.start()
        except OSError as exc:
            self._report(f"no live control for this process ({exc}); the program is not affected.")
            return
        self.server = server


class FleetControl:
    """The OpAMP client: targets from a fleet's configuration, status back to it.

    It stays with the parent across a fork: a child would report under the parent's instance UID.
    """

    name = "fleet control"

    def __init__(self, escalation_status: str, report: Callable[[str], None]) -> None:
        self._escalation_status = escalation_status
        self._report = report
        self.agent: OpampAgent | None = None

    def install(self, scope: Scope) -> None:
        from otel_scope.control.opamp import start_opamp

        self.agent = start_opamp(scope.settings, self._escalation_status, self._report)

    def uninstall(self) -> None:
        if self.agent is not None:
            self.agent.stop()
            self.agent = None

    def after_fork_in_child(self) -> None:
        self.agent = None


def start_services(scope: Scope, report: Callable[[str], None]) -> list[Feature]:
    """Add the control socket and OpAMP to ``scope`` as the settings say; returns those added.

    They are also stopped at exit (``atexit``); the session's end stops them first on SIGTERM,
    where atexit handlers do not run.
    """
    settings = scope.settings
    failure = scope.feature(FailureDetail)
    escalator = failure.escalator if failure is not None else None
    why = failure.why if failure is not None else ""
    controller = Controller(settings, escalator, why)
    wanted: list[Feature] = []
    if settings.control:
        wanted.append(ControlChannel(controller, report))
    if settings.opamp_endpoint:
        wanted.append(FleetControl(why, report))
    added = [f for f in wanted if scope.add(f, report) is not None]
    atexit.register(scope.remove, *added)
    return added
