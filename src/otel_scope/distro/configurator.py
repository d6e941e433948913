"""The SDK configurator otel-scope's distro selects (entry point ``opentelemetry_configurator``).

Its own module, because it subclasses the SDK's configurator, whose module imports the whole SDK
(traces, metrics and logs): the CLI's own process, which imports :mod:`otel_scope.distro` for the
flag names, must not pay for that.
"""

from __future__ import annotations

import importlib.metadata
import os
import socket
from typing import Any
from urllib.parse import urlparse

from otel_scope._sdk import SDKConfigurator
from otel_scope.distro import settings_once
from otel_scope.distro.ids import PrivateRandomIdGenerator
from otel_scope.distro.reporting import quiet_export_errors, say
from otel_scope.pipeline import ScopeSpanProcessor

LOCAL_STORE_EXPORTER = "otel_scope"
_EXPORT_TIMEOUT_S = 2  # per export attempt, so exit waits at most about this long for a dead collector


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


def _otlp_timeouts(exporters: list[str]) -> dict[Any, dict[str, Any]]:
    """Export timeouts for the OTLP span exporters, keyed by class as the SDK wants them.

    The classes are imported only when some exporter other than the local store is configured:
    importing the gRPC one costs about 30 ms, and the map applies only to exporters in use.
    """
    if all(name == LOCAL_STORE_EXPORTER for name in exporters):
        return {}
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
        kwargs.setdefault("exporter_args_map", _otlp_timeouts(exporters))
        kwargs.setdefault("export_span_processor", ScopeSpanProcessor)
        if not os.environ.get("OTEL_PYTHON_ID_GENERATOR"):
            kwargs.setdefault("id_generator", PrivateRandomIdGenerator())
        # The SDK leaves _configure unannotated ("unused-ignore": for a release that annotates it).
        super()._configure(**kwargs)  # type: ignore[no-untyped-call, unused-ignore]
