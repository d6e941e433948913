"""The SDK configurator otel-scope's distro selects (entry point ``opentelemetry_configurator``).

When the environment asks for traces only (no metrics or logs exporter, no configuration file,
no component that only the SDK's configurator loads), it builds the tracer provider itself, the
same one the SDK's configurator would build; otherwise it hands the whole set-up to the SDK's
configurator. Why: the SDK's configurator module imports the metrics and logs SDKs whether or
not they are configured, about 20 ms of every start (``benchmarks/bench_startup.py``), and
with no exporter for them they would only install providers that record nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from otel_scope._sdk import entry_points
from otel_scope.distro import settings_once
from otel_scope.distro.ids import PrivateRandomIdGenerator
from otel_scope.distro.reporting import quiet_export_errors, say
from otel_scope.pipeline import ScopeSpanProcessor

LOCAL_STORE_EXPORTER = "otel_scope"
_EXPORT_TIMEOUT_S = 2  # per export attempt, so exit waits at most about this long for a dead collector


def _known_exporters() -> set[str]:
    return {ep.name for ep in entry_points(group="opentelemetry_traces_exporter")}


def _collector_reachable(endpoint: str, timeout: float = 0.15) -> bool:
    parsed = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
    host = parsed.hostname or "localhost"
    # An ASCII name goes as bytes: for a str, getaddrinfo() imports the IDNA codec (with
    # stringprep and unicodedata), about 1 ms of every start that probes for a collector. (The
    # stubs allow a str only; create_connection passes the host to getaddrinfo(), which takes both.)
    address = host.encode("ascii") if host.isascii() else host
    try:
        with socket.create_connection((address, parsed.port or 4317), timeout=timeout):  # type: ignore[arg-type]
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
    """Export timeouts for the OTLP span exporters in use, keyed by class as the SDK wants them.

    ``exporters``: entry-point names, ``otlp`` already resolved. Only the classes in use are
    imported: importing the gRPC one costs about 30 ms.
    """
    if os.environ.get("OTEL_EXPORTER_OTLP_TIMEOUT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"):
        return {}
    args: dict[Any, dict[str, Any]] = {}
    for name in set(exporters) & set(_OTLP_PROTOCOLS.values()):
        exporter = _exporter_class(name)
        if exporter is not None:
            args[exporter] = {"timeout": _EXPORT_TIMEOUT_S}
    return args


def _exporter_class(name: str) -> type | None:
    """The span exporter class of entry point ``name``; ``None`` if it cannot be loaded as one."""
    from opentelemetry.sdk.trace.export import SpanExporter

    found = entry_points(group="opentelemetry_traces_exporter", name=name)
    try:
        exporter = next(iter(found)).load() if found else None
    except ImportError:
        return None
    return exporter if isinstance(exporter, type) and issubclass(exporter, SpanExporter) else None


# The SDK's built-in samplers, which its TracerProvider reads from OTEL_TRACES_SAMPLER itself;
# any other name is a sampler loaded by entry point, which only the SDK's configurator does.
_BUILTIN_SAMPLERS = frozenset(
    {
        "always_on",
        "always_off",
        "parentbased_always_on",
        "parentbased_always_off",
        "traceidratio",
        "parentbased_traceidratio",
    }
)
_OTLP_PROTOCOLS = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}
# The configure() arguments the traces-only set-up understands: what the stock CLI passes and
# what ScopeConfigurator adds. Any other one goes to the SDK's configurator.
_TRACES_ONLY_ARGUMENTS = frozenset(
    {"auto_instrumentation_version", "exporter_args_map", "export_span_processor", "id_generator"}
)


def otlp_exporter_name(environ: Mapping[str, str]) -> str:
    """The entry-point name ``otlp`` stands for, as the SDK resolves it from the OTLP protocol.

    A protocol the Python exporters do not speak (``http/json``, a typo) makes the SDK's
    configurator raise, which stops the whole instrumentation; here it is one line instead, and
    the closest supported protocol is used (``http/protobuf`` for an HTTP one, else ``grpc``).
    """
    names = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    variable = next((v for v in names if environ.get(v)), None)
    if variable is None:
        return _OTLP_PROTOCOLS["grpc"]
    protocol = environ[variable].strip()
    if protocol in _OTLP_PROTOCOLS:
        return _OTLP_PROTOCOLS[protocol]
    closest = "http/protobuf" if protocol.startswith("http") else "grpc"
    say(f"{variable}={protocol!r} is not supported; accepted: {', '.join(_OTLP_PROTOCOLS)}. Using {closest}.")
    return _OTLP_PROTOCOLS[closest]


def beyond_traces(environ: Mapping[str, str], kwargs: Mapping[str, Any]) -> str | None:
    """What asks the SDK for more than a tracer provider, or ``None``: then traces-only will do.

    Each answer is something only the SDK's configurator sets up: a metrics or logs exporter, a
    declarative configuration file, the SDK's logging handler, a component named by entry point
    (ID generator, sampler, the experimental per-signal configurators), an OpAMP agent.
    """
    for variable in ("OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER"):
        if environ.get(variable, "").strip().lower() not in ("", "none"):
            return variable
    for variable in (
        "OTEL_CONFIG_FILE",
        "OTEL_PYTHON_ID_GENERATOR",
        "OTEL_PYTHON_TRACER_CONFIGURATOR",
        "OTEL_PYTHON_METER_CONFIGURATOR",
        "OTEL_PYTHON_LOGGER_CONFIGURATOR",
    ):
        if environ.get(variable):
            return variable
    if environ.get("OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED", "").strip().lower() == "true":
        return "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED"
    if environ.get("OTEL_TRACES_SAMPLER", "") not in _BUILTIN_SAMPLERS | {""}:
        return "OTEL_TRACES_SAMPLER"
    extra = set(kwargs) - _TRACES_ONLY_ARGUMENTS
    if extra:
        return ", ".join(sorted(extra))
    if entry_points(group="_opentelemetry_opamp"):
        return "an OpAMP entry point"
    return None


def _configure_traces(exporters: list[str], kwargs: Mapping[str, Any]) -> None:
    """The tracer provider the SDK's configurator would build, built without its module.

    ``exporters``: entry-point names, ``otlp`` already resolved by :func:`otlp_exporter_name`.

    The provider reads the sampler from ``OTEL_TRACES_SAMPLER``/``_ARG`` itself, and the
    resource from ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_SERVICE_NAME`` and the resource
    detectors, as under the SDK's configurator.
    """
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import set_tracer_provider

    attributes: dict[str, Any] = {}
    if kwargs.get("auto_instrumentation_version"):
        attributes["telemetry.auto.version"] = kwargs["auto_instrumentation_version"]
    provider = TracerProvider(id_generator=kwargs.get("id_generator"), resource=Resource.create(attributes))
    set_tracer_provider(provider)
    arguments = kwargs.get("exporter_args_map") or {}
    processor = kwargs.get("export_span_processor") or ScopeSpanProcessor
    for name in dict.fromkeys(exporters):  # "otlp" and what it stands for are one exporter
        exporter = _exporter_class(name)
        if exporter is None:
            say(f"trace exporter {name!r} cannot be loaded as a span exporter; it is left out.")
            continue
        provider.add_span_processor(processor(exporter(**arguments.get(exporter, {}))))


class ScopeConfigurator:
    """The SDK configurator, with exporter validation, bounded export time and private IDs.

    Every exporter gets a :class:`~otel_scope.pipeline.ScopeSpanProcessor` instead of the SDK's
    ``BatchSpanProcessor``: flushes with real deadlines, fork safety, and counted drops. The
    stock CLI only calls :meth:`configure`, so this need not subclass the SDK's configurator,
    whose module is what the traces-only set-up avoids importing.
    """

    def configure(self, **kwargs: Any) -> None:
        self._configure(**kwargs)

    def _configure(self, **kwargs: Any) -> None:
        settings_once()
        quiet_export_errors()
        chosen = choose_trace_exporters(os.environ)
        exporters = [otlp_exporter_name(os.environ) if n == "otlp" else n for n in chosen]
        os.environ["OTEL_TRACES_EXPORTER"] = ",".join(dict.fromkeys(exporters)) or "none"
        kwargs.setdefault("exporter_args_map", _otlp_timeouts(exporters))
        kwargs.setdefault("export_span_processor", ScopeSpanProcessor)
        if not os.environ.get("OTEL_PYTHON_ID_GENERATOR"):
            kwargs.setdefault("id_generator", PrivateRandomIdGenerator())
        if beyond_traces(os.environ, kwargs) is None:
            _configure_traces(exporters, kwargs)
            return
        from otel_scope._sdk import SDKConfigurator, global_provider

        try:
            SDKConfigurator().configure(**kwargs)  # type: ignore[no-untyped-call, unused-ignore]
        except Exception as exc:  # the SDK raises on some bad values; the program must still run
            traced = global_provider() is not None
            say(
                f"the OpenTelemetry SDK's configuration failed ({type(exc).__name__}: {exc}); "
                f"traces {'are' if traced else 'are set up alone'}, metrics and logs may be off."
            )
            if not traced:  # it failed before the tracer provider: traces still work
                _configure_traces(exporters, kwargs)
