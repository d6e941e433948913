"""otel-scope as an OpenTelemetry distro: what ``opentelemetry-instrument`` loads.

The stock CLI runs, in the traced process: the distro, one configurator, then every instrumentor.
Whichever distro wins (``opentelemetry-distro`` may be installed too), instrumentors from every
package run, so the essential work (settings, targets, import hook, session) is done in
:class:`ScopeInstrumentor`. :class:`ScopeConfigurator` guards the SDK set-up: it drops unknown
exporter names (one would abort the SDK's whole initialisation), picks the local store when no
collector is configured or reachable, and bounds export time so a collector that is down never
delays exit by more than a couple of seconds.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import socket
import sys
from typing import Any
from urllib.parse import urlparse

# Both modules start with a file-level "# type: ignore", so mypy sees them as empty and the two
# classes as Any, which a strict module may not subclass: hence the "misc" ignores on ours below.
# A release that drops it would make all these ignores unused, hence "unused-ignore".
from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined, unused-ignore]
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined, unused-ignore]

from otel_scope._sdk import SDKConfigurator
from otel_scope.config import ConfigError, Settings, load_settings
from otel_scope.distro.ids import PrivateRandomIdGenerator
from otel_scope.distro.reporting import quiet_export_errors, say
from otel_scope.pipeline import ScopeSpanProcessor, suppressed

_log = logging.getLogger("otel_scope")

LOCAL_STORE_EXPORTER = "otel_scope"
_EXPORT_TIMEOUT_S = 2  # per export attempt, so exit waits at most about this long for a dead collector


class _State:
    settings: Settings | None = None
    error: str | None = None
    loaded = False


_state = _State()


def settings_once() -> Settings | None:
    """Load and validate the settings once per process; report a bad value in one line."""
    if not _state.loaded:
        _state.loaded = True
        try:
            _state.settings = load_settings()
        except ConfigError as exc:
            _state.error = str(exc)
            say(f"{exc}. otel-scope is off for this run; the program runs unchanged.")
    return _state.settings


class ScopeDistro(BaseDistro):  # type: ignore[misc, unused-ignore]  # Any: see the imports
    """Selects otel-scope's configurator unless the user chose another."""

    def _configure(self, **kwargs: Any) -> None:
        os.environ.setdefault("OTEL_PYTHON_CONFIGURATOR", "otel_scope")


def _known_exporters() -> set[str]:
    return {ep.name for ep in importlib.metadata.entry_points(group="opentelemetry_traces_exporter")}


def _collector_reachable(endpoint: str, timeout: float = 0.15) -> bool:
    parsed = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
    try:
        with socket.create_connection((parsed.hostname or "localhost", parsed.port or 4317), timeout=timeout):
            return True
    except OSError:
        return False


def choose_trace_exporters(environ: dict[str, str] | os._Environ[str]) -> list[str]:
    """The exporter names to configure, after validation.

    With ``OTEL_TRACES_EXPORTER`` unset: OTLP plus the local store when an OTLP endpoint is set
    or a collector answers on the default port; the local store alone otherwise, so a newcomer
    with no collector gets a working trace view instead of a wall of connection errors.
    Unknown names are dropped with one line naming them and the accepted ones.
    """
    raw = environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if not raw:
        explicit = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL"
        )
        default = (
            "http://localhost:4318" if (protocol or "grpc").startswith("http") else "http://localhost:4317"
        )
        if explicit or _collector_reachable(default):
            return ["otlp", LOCAL_STORE_EXPORTER]
        return [LOCAL_STORE_EXPORTER]
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if names == ["none"]:
        return []
    known = _known_exporters()
    bad = [n for n in names if n not in known]
    if bad:
        say(
            f"OTEL_TRACES_EXPORTER names unknown exporter(s) {', '.join(bad)}; accepted: "
            f"{', '.join(sorted(known))}, none. Using the others"
            + ("" if len(bad) < len(names) else f" (none left: using {LOCAL_STORE_EXPORTER})")
            + "."
        )
    good = [n for n in names if n in known]
    return good or [LOCAL_STORE_EXPORTER]


def _otlp_timeouts() -> dict[Any, dict[str, Any]]:
    if os.environ.get("OTEL_EXPORTER_OTLP_TIMEOUT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"):
        return {}
    args: dict[Any, dict[str, Any]] = {}
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

        args[Grpc] = {"timeout": _EXPORT_TIMEOUT_S}
    except ImportError:
        pass
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

        args[Http] = {"timeout": _EXPORT_TIMEOUT_S}
    except ImportError:
        pass
    return args


class ScopeConfigurator(SDKConfigurator):
    """The SDK configurator, with exporter validation, bounded export time and private IDs.

    Every exporter gets a :class:`~otel_scope.pipeline.ScopeSpanProcessor` instead of the SDK's
    ``BatchSpanProcessor``: flushes with real deadlines, fork safety, and counted drops.
    """

    def _configure(self, **kwargs: Any) -> None:
        settings_once()
        quiet_export_errors()
        exporters = choose_trace_exporters(os.environ)
        os.environ["OTEL_TRACES_EXPORTER"] = ",".join(exporters) or "none"
        kwargs.setdefault("exporter_args_map", _otlp_timeouts())
        kwargs.setdefault("export_span_processor", ScopeSpanProcessor)
        if not os.environ.get("OTEL_PYTHON_ID_GENERATOR"):
            kwargs.setdefault("id_generator", PrivateRandomIdGenerator())
        # The SDK leaves _configure unannotated ("unused-ignore": for a release that annotates it).
        super()._configure(**kwargs)  # type: ignore[no-untyped-call, unused-ignore]


class ScopeInstrumentor(BaseInstrumentor):  # type: ignore[misc, unused-ignore]  # Any: see the imports
    """Starts otel-scope in the traced process: targets, import hook, session, control channel."""

    def instrumentation_dependencies(self) -> tuple[str, ...]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        settings = settings_once()
        quiet_export_errors()
        if settings is None or settings.mode == "off":
            return
        try:
            from otel_scope import api
            from otel_scope.distro.lifecycle import start_process

            with suppressed():  # applying targets (json:*, logging:*, ...) must not trace itself
                scope = api.start(settings, say)
            start_process(scope, sys.argv)
        except Exception as exc:  # otel-scope must never stop the program from starting
            say(f"could not start ({type(exc).__name__}: {exc}); the program runs without otel-scope.")
            _log.debug("otel-scope start failed", exc_info=True)

    def _uninstrument(self, **kwargs: Any) -> None:
        from otel_scope import api

        api.shutdown()
