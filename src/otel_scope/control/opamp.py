"""Fleet control over OpAMP: report this process and its scope settings, apply remote scope config.

With ``OTEL_SCOPE_OPAMP_ENDPOINT`` set (and the ``opamp`` extra installed, which brings
``opentelemetry-opamp-client``), a daemon thread speaks OpAMP's HTTP transport: it POSTs a
protobuf ``AgentToServer`` to the endpoint and reads the ``ServerToAgent`` in the response.

* The first message (and any after the server sets ``ReportFullState``, or after a reconnect)
  carries the ``AgentDescription`` (``service.name`` and friends from the SDK resource, plus
  ``telemetry.distro.name=otel-scope``, ``process.pid``, ...) and the ``EffectiveConfig``: one
  config-map entry ``otel-scope.json`` with the effective scope settings and active targets.
* Then it polls every ``heartbeat_interval_seconds`` the server offers in
  ``connection_settings.opamp`` (the spec's rule for HTTP clients), else every
  :data:`DEFAULT_POLL_S` seconds.
* An ``AgentRemoteConfig`` with a new ``config_hash`` is applied (see :func:`parse_remote_config`
  for the format) and answered at once with ``RemoteConfigStatus`` ``APPLIED``, or ``FAILED``
  with the reason, plus the new effective config.

Remote targets are declarative: each remote config replaces the previous one's targets as a
whole (new ones are added before old ones are removed, so a function named by both never loses
instrumentation); targets from the settings, the Python API or ``otel-scope targets`` are not
touched. A config that fails validation or cannot be applied changes nothing.

An unreachable server costs one line on stderr (once per process), then silence and a retry at
the poll interval; the program is never affected.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

from otel_scope import api
from otel_scope._version import __version__
from otel_scope.config import Settings
from otel_scope.control.commands import describe_request
from otel_scope.engine import Engine, Handle
from otel_scope.targets.planner import Request
from otel_scope.vocabulary import LEVELS, TARGET_MODES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

_log = logging.getLogger("otel_scope")

DEFAULT_POLL_S = 30.0
REQUEST_TIMEOUT_MS = 2000  # per POST; also bounds the disconnect message at exit
EFFECTIVE_CONFIG_NAME = "otel-scope.json"
CONFIG_NAMES = ("otel-scope.json", "otel-scope.toml")
REMOTE_KEYS = ("targets", "locals", "level", "mode")
_JSON_TYPES = ("application/json", "text/json")
_TOML_TYPES = ("application/toml", "text/toml")


class RemoteConfigError(ValueError):
    """A remote config otel-scope cannot apply; the message is the FAILED status's reason."""


# -- the remote config format ------------------------------------------------------------------
def parse_remote_config(files: Mapping[str, tuple[str, bytes]]) -> dict[str, Any]:
    """The scope settings in a remote config map (``name -> (content type, body)``), validated.

    otel-scope reads the entry ``otel-scope.json`` (JSON) or ``otel-scope.toml`` (TOML; the same
    keys as ``[tool.otel-scope]``); the content type, when set, must agree. Keys: ``targets`` and
    ``locals`` (lists of target patterns, or comma-separated strings), ``level`` and ``mode``. An
    empty config map means "no remote targets". Returns ``{"targets", "locals", "level",
    "mode"}`` with lists of pattern strings.
    """
    if not files:
        return {"targets": [], "locals": [], "level": None, "mode": "auto"}
    names = [n for n in CONFIG_NAMES if n in files]
    if not names:
        found = ", ".join(sorted(files)) or "none"
        raise RemoteConfigError(f"no {' or '.join(CONFIG_NAMES)} entry in the remote config (found: {found})")
    if len(names) > 1:
        raise RemoteConfigError(f"both {' and '.join(names)} are in the remote config; send one")
    name = names[0]
    content_type, body = files[name]
    kind = "json" if name.endswith(".json") else "toml"
    accepted = _JSON_TYPES if kind == "json" else _TOML_TYPES
    if content_type and content_type.split(";")[0].strip().lower() not in accepted:
        raise RemoteConfigError(f"{name} has content type {content_type!r}; accepted: {', '.join(accepted)}")
    try:
        text = body.decode("utf-8")
        data = json.loads(text) if kind == "json" else tomllib.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError and TOMLDecodeError too
        raise RemoteConfigError(f"{name} is not valid {kind.upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise RemoteConfigError(f"{name} must hold an object with keys {', '.join(REMOTE_KEYS)}")
    unknown = sorted(set(data) - set(REMOTE_KEYS))
    if unknown:
        raise RemoteConfigError(
            f"{name} has unknown key(s) {', '.join(unknown)}; accepted: {', '.join(REMOTE_KEYS)}"
        )
    level = data.get("level")
    if level is not None and level not in LEVELS:
        raise RemoteConfigError(f"level {level!r} is not valid; accepted: {', '.join(LEVELS)}")
    mode = data.get("mode", "auto")
    if mode not in TARGET_MODES:
        raise RemoteConfigError(f"mode {mode!r} is not valid; accepted: {', '.join(TARGET_MODES)}")
    return {
        "targets": _pattern_list(data.get("targets", []), "targets"),
        "locals": _pattern_list(data.get("locals", []), "locals"),
        "level": level,
        "mode": mode,
    }


def _pattern_list(value: object, key: str) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RemoteConfigError(f"{key} must be a list of target patterns (or a comma-separated string)")
    return [v.strip() for v in value if v.strip()]


def remote_requests(config: Mapping[str, Any]) -> list[Request]:
    """The engine requests a parsed remote config makes, as ``[tool.otel-scope]`` would make them."""
    requests = []
    try:
        for text in config["targets"]:
            requests.append(api.make_request(text, mode=config["mode"], source="opamp"))
        for text in config["locals"]:
            request = api.make_request(
                text, mode=config["mode"], capture_locals="*", level=config["level"], source="opamp"
            )
            requests.append(request._replace(runtime=False))
    except ValueError as exc:
        raise RemoteConfigError(str(exc)) from None
    return requests


class RemoteTargets:
    """The targets the OpAMP server asked for, replaced as a whole by each applied config."""

    def __init__(self, engine: Callable[[], Engine] = api.get_engine) -> None:
        self._engine = engine
        self._handles: list[Handle] = []
        self.config: dict[str, Any] | None = None

    def apply(self, config: dict[str, Any]) -> None:
        """Make ``config`` the remote targets; raises :class:`RemoteConfigError` and changes nothing."""
        requests = remote_requests(config)
        engine = self._engine()
        added: list[Handle] = []
        failures: list[str] = []
        for request in requests:
            added.append(engine.add(request))
            entry = next((e for e in engine.entries() if e.request is request), None)
            if entry is not None and entry.errors:
                failures.append(f"{request.pattern.text}: {entry.failure()}")
        if failures:
            for handle in added:
                handle.remove()
            raise RemoteConfigError("; ".join(failures))
        for handle in self._handles:
            handle.remove()
        self._handles, self.config = added, config


def effective_config(
    settings: Settings, remote: RemoteTargets, escalation: str, engine: Engine
) -> dict[str, Any]:
    """What this process runs with: the scope settings that matter for tracing, and every target."""
    targets = []
    for entry in engine.entries():
        targets.append(
            {
                "pattern": entry.request.pattern.text,
                "source": entry.request.source,
                **describe_request(entry.request),
                "functions": engine.functions_of(entry),
            }
        )
    return {
        "mode": settings.mode,
        "level": settings.level,
        "environment": settings.environment,
        "escalation": escalation,
        "control": settings.control,
        "remote": remote.config,
        "targets": targets,
    }


# -- the agent -----------------------------------------------------------------------------------
def _description(settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """Identifying and non-identifying attributes, from the SDK resource where there is one."""
    from opentelemetry import trace

    resource = getattr(trace.get_tracer_provider(), "resource", None)
    attrs = dict(resource.attributes) if resource is not None else {}
    identifying = {
        key: attrs[key]
        for key in ("service.name", "service.namespace", "service.instance.id", "service.version")
        if isinstance(attrs.get(key), (str, int, float, bool))
    }
    identifying.setdefault("service.name", os.environ.get("OTEL_SERVICE_NAME") or "unknown_service")
    non_identifying = {
        "telemetry.distro.name": "otel-scope",
        "telemetry.distro.version": __version__,
        "deployment.environment.name": settings.environment,
        "host.name": socket.gethostname(),
        "os.type": platform.system().lower(),
        "process.pid": os.getpid(),
        "process.runtime.name": sys.implementation.name,
        "process.runtime.version": platform.python_version(),
        "process.command_args": " ".join(sys.argv)[:512],
    }
    return identifying, non_identifying


class OpampAgent:
    """The OpAMP client thread of one process."""

    def __init__(
        self,
        endpoint: str,
        settings: Settings,
        escalation: str,
        report: Callable[[str], None],
        engine: Callable[[], Engine] = api.get_engine,
    ) -> None:
        from opentelemetry._opamp.client import OpAMPClient
        from opentelemetry._opamp.proto import opamp_pb2

        self._pb = opamp_pb2
        self._settings = settings
        self._escalation = escalation
        self._engine = engine
        self._report = report  # one line to the user (stderr under opentelemetry-instrument)
        self.endpoint = endpoint
        self.remote = RemoteTargets(engine)
        identifying, non_identifying = _description(settings)
        self._client = OpAMPClient(
            endpoint=endpoint,
            timeout_millis=REQUEST_TIMEOUT_MS,
            agent_identifying_attributes=identifying,
            agent_non_identifying_attributes=non_identifying,
        )
        self._interval = DEFAULT_POLL_S
        self._last_hash: bytes | None = None
        self._connected = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="otel-scope-opamp", daemon=True)

    def start(self) -> None:
        self._update_effective_config()
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and, if the server was reachable, tell it this agent is going away."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._connected:
            try:
                self._client.send(self._client.build_agent_disconnect_message())
            except Exception:
                _log.debug("otel-scope: OpAMP disconnect message not delivered", exc_info=True)

    # -- the loop ------------------------------------------------------------------------------
    def _run(self) -> None:
        full_state = True  # the first message, and the first after a failure, says everything
        said_unreachable = False  # one line per process: a flapping server must not flood stderr
        while not self._stop.is_set():
            payload = (
                self._client.build_full_state_message()
                if full_state
                else self._client.build_heartbeat_message()
            )
            try:
                message = self._client.send(payload)
            except Exception as exc:
                self._connected = False
                if not said_unreachable:
                    said_unreachable = True
                    self._report(
                        f"OpAMP server {self.endpoint} not reachable ({_first_line(exc)}); retrying every "
                        f"{self._interval:g} s. The program is not affected."
                    )
                full_state = True
                self._stop.wait(self._interval)
                continue
            self._connected = True
            try:
                full_state = self._handle(message)
            except Exception:  # a malformed message must not end fleet control
                _log.debug("otel-scope: could not handle an OpAMP message", exc_info=True)
                full_state = False
            if not full_state:
                self._stop.wait(self._interval)

    def _handle(self, message: Any) -> bool:
        """Act on one ``ServerToAgent``; True when the server must hear our full state at once."""
        pb = self._pb
        if message.HasField("error_response"):
            _log.debug("otel-scope: OpAMP server error: %s", message.error_response.error_message)
            return False
        offered = message.connection_settings.opamp.heartbeat_interval_seconds
        if offered > 0:
            self._interval = float(offered)
        report = bool(message.flags & pb.ServerToAgentFlags_ReportFullState)
        if message.HasField("remote_config") and message.remote_config.config_hash != self._last_hash:
            self._apply(message.remote_config)
            report = True
        return report

    def _apply(self, remote_config: Any) -> None:
        pb = self._pb
        config_hash = remote_config.config_hash
        files = {
            name: (entry.content_type, entry.body) for name, entry in remote_config.config.config_map.items()
        }
        try:
            self.remote.apply(parse_remote_config(files))
        except RemoteConfigError as exc:
            status, error = pb.RemoteConfigStatuses_FAILED, str(exc)
        except Exception as exc:  # the engine guards itself; report anything else as a failure
            status, error = pb.RemoteConfigStatuses_FAILED, f"internal error: {type(exc).__name__}: {exc}"
        else:
            status, error = pb.RemoteConfigStatuses_APPLIED, ""
        self._last_hash = config_hash
        self._client.update_remote_config_status(config_hash, status, error)
        self._update_effective_config()

    def _update_effective_config(self) -> None:
        config = effective_config(self._settings, self.remote, self._escalation, self._engine())
        self._client.update_effective_config({EFFECTIVE_CONFIG_NAME: config}, "application/json")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def start_opamp(settings: Settings, escalation: str, report: Callable[[str], None]) -> OpampAgent | None:
    """Start fleet control if an endpoint is set; one line on stderr if it cannot start."""
    endpoint = settings.opamp_endpoint
    if not endpoint:
        return None
    try:
        agent = OpampAgent(endpoint, settings, escalation, report)
    except ImportError:
        report(
            "OTEL_SCOPE_OPAMP_ENDPOINT is set but the OpAMP client is not installed "
            "(pip install 'otel-scope[opamp]'); fleet control is off."
        )
        return None
    agent.start()
    return agent
