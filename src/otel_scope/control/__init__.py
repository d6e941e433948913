"""Live control of a running process: the local control socket, OpAMP fleet control, and their services.

See ``docs/live-control.md``. The distro starts everything through :func:`start_services`;
``otel-scope targets`` talks to a process through :func:`otel_scope.control.client.send`.
"""

from otel_scope.control.services import ControlChannel, FleetControl, start_services

__all__ = ["ControlChannel", "FleetControl", "start_services"]
