"""The shipped backend stack (docker/, collector-config/) is internally consistent.

No image can be pulled where these tests usually run, so they check statically what a broken
stack would only show at `docker compose up` time. They check that components referenced in the
Collector pipeline exist, and that mounts, ports and endpoints agree across the compose file,
the Collector, Tempo and Grafana configs and otel-scope's own defaults. They also check the
limits that would silently cut captured values. The last test brings the real stack up, but
only where a Docker daemon answers; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import trace_exporter as http_trace_exporter

from otel_scope.config import Settings

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker" / "compose.yaml"
TEMPO = REPO / "docker" / "tempo.yaml"
DATASOURCES = REPO / "docker" / "grafana-datasources.yaml"
COLLECTOR = REPO / "collector-config" / "config.yaml"
EXISTING_COLLECTOR_GUIDE = REPO / "collector-config" / "existing-collector.md"
BACKENDS_DOC = REPO / "docs" / "backends.md"

# The OTLP specification's default ports, which every OTel SDK uses when nothing is configured.
OTLP_GRPC_PORT, OTLP_HTTP_PORT = 4317, 4318
# What Jaeger v2's built-in all-in-one config listens on (cmd/jaeger/internal/all-in-one.yaml);
# compose runs it without --config, so there is no file here to read these from.
JAEGER_PORTS = {"otlp_grpc": 4317, "otlp_http": 4318, "ui": 16686, "health": 13133}
# Tempo's default attribute cap, the one that truncates captured locals.
TEMPO_DEFAULT_MAX_ATTRIBUTE_BYTES = 2048
TEMPO_DEFAULT_MAX_BYTES_PER_TRACE = 5_000_000

_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::?-(?P<default>[^}]*))?\}")


def load(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def with_defaults(text: str) -> str:
    """Interpolate ``${VAR:-default}`` as compose would with VAR unset: the shipped defaults."""

    def default(match: re.Match[str]) -> str:
        assert match["default"] is not None, f"{match[0]} has no default: the stack would need a .env file"
        return match["default"]

    return _VARIABLE.sub(default, text)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(with_defaults(COMPOSE.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def collector() -> dict[str, Any]:
    return load(COLLECTOR)


@pytest.fixture(scope="module")
def tempo() -> dict[str, Any]:
    return load(TEMPO)


@pytest.fixture(scope="module")
def datasources() -> dict[str, Any]:
    return load(DATASOURCES)


def published_ports(service: dict[str, Any]) -> list[tuple[int, int]]:
    """(host, container) pairs from compose's short syntax: "H:C", "IP:H:C", optional "/proto"."""
    pairs = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):  # long syntax
            pairs.append((int(entry["published"]), int(entry["target"])))
            continue
        parts = str(entry).split("/")[0].split(":")
        assert len(parts) >= 2, f"port {entry!r} is not published on a fixed host port"
        pairs.append((int(parts[-2]), int(parts[-1])))
    return pairs


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each bind mount (sources that are paths, not named volumes)."""
    mounts = []
    for entry in service.get("volumes", []):
        source, target = str(entry).split(":")[:2]
        if source.startswith((".", "/", "~")):
            mounts.append((source, target))
    return mounts


def host_port(endpoint: str) -> tuple[str, int]:
    """``host:port`` or ``scheme://host:port`` -> (host, port)."""
    parsed = urlsplit(endpoint if "//" in endpoint else "//" + endpoint)
    assert parsed.hostname and parsed.port, f"{endpoint!r} names no host and port"
    return parsed.hostname, parsed.port


def pipeline_ids(collector: dict[str, Any], kind: str) -> set[str]:
    return {cid for pipeline in collector["service"]["pipelines"].values() for cid in pipeline.get(kind, [])}


# --- Every file parses --------------------------------------------------------------------------


@pytest.mark.parametrize("path", [COMPOSE, TEMPO, DATASOURCES, COLLECTOR], ids=lambda p: p.name)
def test_every_config_file_is_a_yaml_mapping(path: Path) -> None:
    assert isinstance(load(path), dict)


@pytest.mark.parametrize("path", [EXISTING_COLLECTOR_GUIDE, BACKENDS_DOC], ids=lambda p: p.name)
def test_yaml_snippets_in_the_guides_parse(path: Path) -> None:
    """Users paste these into their own configs; a broken snippet is a broken instruction."""
    snippets = re.findall(r"```yaml\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    for snippet in snippets:
        assert isinstance(yaml.safe_load(snippet), dict), snippet


# --- Collector ----------------------------------------------------------------------------------


def test_collector_pipelines_reference_only_defined_components(collector: dict[str, Any]) -> None:
    for kind in ("receivers", "processors", "exporters"):
        undefined = pipeline_ids(collector, kind) - set(collector.get(kind) or {})
        assert not undefined, f"pipeline {kind} not defined at top level: {sorted(undefined)}"
    used_extensions = set(collector["service"].get("extensions", []))
    undefined_extensions = used_extensions - set(collector.get("extensions") or {})
    assert not undefined_extensions, f"service.extensions not defined: {sorted(undefined_extensions)}"


def test_collector_defines_nothing_it_does_not_use(collector: dict[str, Any]) -> None:
    """A defined but unused exporter looks like it works; the Collector silently ignores it."""
    for kind in ("receivers", "processors", "exporters"):
        unused = set(collector.get(kind) or {}) - pipeline_ids(collector, kind)
        assert not unused, f"{kind} defined but in no pipeline: {sorted(unused)}"
    assert set(collector.get("extensions") or {}) == set(collector["service"].get("extensions", []))


def test_collector_component_ids_are_type_or_type_slash_name(collector: dict[str, Any]) -> None:
    for kind in ("receivers", "processors", "exporters", "extensions"):
        for cid in collector.get(kind) or {}:
            well_formed = re.fullmatch(r"[a-z][a-z0-9_]*(/[A-Za-z0-9_.-]+)?", cid)
            assert well_formed, f"{kind}: bad component id {cid!r}"


def test_collector_has_one_traces_pipeline_with_memory_limiter_first(collector: dict[str, Any]) -> None:
    pipelines = collector["service"]["pipelines"]
    assert list(pipelines) == ["traces"]
    for name, pipeline in pipelines.items():
        processors = pipeline.get("processors", [])
        assert processors and processors[0].split("/")[0] == "memory_limiter", f"{name}: {processors}"


def test_collector_batch_max_size_is_not_below_batch_size(collector: dict[str, Any]) -> None:
    for cid, config in collector["processors"].items():
        if cid.split("/")[0] == "batch":
            assert config["send_batch_max_size"] >= config["send_batch_size"], cid


def test_collector_otlp_receiver_listens_on_all_interfaces_at_the_otlp_ports(
    collector: dict[str, Any],
) -> None:
    protocols = collector["receivers"]["otlp"]["protocols"]
    assert host_port(protocols["grpc"]["endpoint"]) == ("0.0.0.0", OTLP_GRPC_PORT)
    assert host_port(protocols["http"]["endpoint"]) == ("0.0.0.0", OTLP_HTTP_PORT)
    # grpc-go's 4 MiB default refuses a whole SDK batch of large otel-scope spans.
    assert protocols["grpc"]["max_recv_msg_size_mib"] > 4


def test_collector_exports_to_jaeger_tempo_and_debug(collector: dict[str, Any]) -> None:
    assert {"otlp/jaeger", "otlp/tempo", "debug"} <= pipeline_ids(collector, "exporters")


def test_collector_exporters_point_at_compose_services_that_receive_otlp_there(
    collector: dict[str, Any], compose: dict[str, Any], tempo: dict[str, Any]
) -> None:
    tempo_grpc = tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    otlp_grpc_port = {"jaeger": JAEGER_PORTS["otlp_grpc"], "tempo": host_port(tempo_grpc)[1]}
    for cid in ("otlp/jaeger", "otlp/tempo"):
        config = collector["exporters"][cid]
        host, port = host_port(config["endpoint"])
        assert host in compose["services"], f"{cid} -> {host!r}, not a compose service"
        assert port == otlp_grpc_port[host], f"{cid} -> {host}:{port}; {host} receives OTLP gRPC elsewhere"
        assert config["tls"]["insecure"] is True, f"{cid}: the backends inside compose serve no TLS"


def test_collector_health_check_is_published_and_its_absent_healthcheck_explained(
    collector: dict[str, Any], compose: dict[str, Any]
) -> None:
    _, port = host_port(collector["extensions"]["health_check"]["endpoint"])
    service = compose["services"]["otel-collector"]
    assert (port, port) in published_ports(service)
    assert "healthcheck" not in service
    assert "FROM scratch" in COMPOSE.read_text(encoding="utf-8")


# --- Compose ------------------------------------------------------------------------------------


def test_compose_runs_collector_jaeger_tempo_and_grafana(compose: dict[str, Any]) -> None:
    images = {name: service["image"] for name, service in compose["services"].items()}
    assert "opentelemetry-collector-contrib" in images["otel-collector"]
    assert "jaegertracing/jaeger:" in images["jaeger"]
    assert images["tempo"].startswith("grafana/tempo:")
    assert images["grafana"].startswith("grafana/grafana:")


def test_compose_images_are_pinned_with_overridable_defaults() -> None:
    raw = load(COMPOSE)  # before interpolation: the ${VAR:-x.y.z} form itself is checked
    for name, service in raw["services"].items():
        image = service["image"]
        match = re.fullmatch(r"[\w./-]+:\$\{(\w+):-(\d+\.\d+\.\d+)\}", image)
        assert match, f"{name}: image {image!r} is not pinned as name:${{VAR:-x.y.z}}"
        assert "latest" not in image


def test_compose_bind_mounts_exist_relative_to_the_compose_file(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for source, _target in bind_mounts(service):
            assert (COMPOSE.parent / source).resolve().is_file(), f"{name} mounts missing {source}"


def test_compose_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for entry in service.get("volumes", []):
            source = str(entry).split(":")[0]
            if not source.startswith((".", "/", "~")):
                assert source in declared, f"{name} uses undeclared volume {source!r}"


def test_compose_mounts_each_config_where_its_program_reads_it(compose: dict[str, Any]) -> None:
    services = compose["services"]
    collector_command = services["otel-collector"]["command"]
    collector_config = next(a.split("=", 1)[1] for a in collector_command if "--config" in a)
    assert ("../collector-config/config.yaml", collector_config) in bind_mounts(services["otel-collector"])
    tempo_config = next(a.split("=", 1)[1] for a in services["tempo"]["command"] if "config.file" in a)
    assert ("./tempo.yaml", tempo_config) in bind_mounts(services["tempo"])
    assert any(
        source == "./grafana-datasources.yaml" and target.startswith("/etc/grafana/provisioning/datasources/")
        for source, target in bind_mounts(services["grafana"])
    )


def test_compose_depends_on_only_existing_services(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for dependency in service.get("depends_on") or {}:
            assert dependency in compose["services"], f"{name} depends on unknown {dependency!r}"


def test_compose_publishes_each_host_port_once(compose: dict[str, Any]) -> None:
    host_ports = [host for service in compose["services"].values() for host, _ in published_ports(service)]
    assert len(host_ports) == len(set(host_ports)), sorted(host_ports)


def test_jaeger_healthcheck_probes_its_health_extension(compose: dict[str, Any]) -> None:
    test = " ".join(compose["services"]["jaeger"]["healthcheck"]["test"])
    assert f"localhost:{JAEGER_PORTS['health']}/status" in test and "wget" in test


# --- Ports agree with the defaults users never have to set ---------------------------------------


def test_sdk_default_otlp_endpoints_reach_the_published_collector_ports(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`opentelemetry-instrument` with no OTEL_EXPORTER_OTLP_* set must land in this stack."""
    for variable in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(variable, raising=False)
    grpc_default = GrpcSpanExporter()._endpoint  # no public accessor for the resolved default
    http_default = http_trace_exporter.DEFAULT_ENDPOINT
    assert host_port(grpc_default) == ("localhost", OTLP_GRPC_PORT)
    assert host_port(http_default) == ("localhost", OTLP_HTTP_PORT)
    published = published_ports(compose["services"]["otel-collector"])
    assert (OTLP_GRPC_PORT, OTLP_GRPC_PORT) in published and (OTLP_HTTP_PORT, OTLP_HTTP_PORT) in published


def test_otel_scope_default_trace_link_opens_the_published_jaeger_ui(compose: dict[str, Any]) -> None:
    ui_url = Settings().ui_url
    host, port = host_port(ui_url.split("/trace/")[0])
    assert host == "localhost" and port == JAEGER_PORTS["ui"]
    assert ui_url.endswith("/trace/{trace_id}"), "Jaeger's trace page is /trace/<id>"
    assert (port, JAEGER_PORTS["ui"]) in published_ports(compose["services"]["jaeger"])


def test_tempo_api_is_published_on_its_listen_port(compose: dict[str, Any], tempo: dict[str, Any]) -> None:
    port = tempo["server"]["http_listen_port"]
    assert (port, port) in published_ports(compose["services"]["tempo"])


def test_backends_do_not_publish_otlp_ports_that_belong_to_the_collector(compose: dict[str, Any]) -> None:
    for name in ("jaeger", "tempo"):
        hosts = {host for host, _ in published_ports(compose["services"][name])}
        assert not hosts & {OTLP_GRPC_PORT, OTLP_HTTP_PORT}, f"{name} would bypass the Collector"


# --- Grafana ------------------------------------------------------------------------------------


def test_grafana_datasources_point_at_compose_services_and_their_ports(
    datasources: dict[str, Any], compose: dict[str, Any], tempo: dict[str, Any]
) -> None:
    listen_port = {"tempo": tempo["server"]["http_listen_port"], "jaeger": JAEGER_PORTS["ui"]}
    by_type = {source["type"]: source for source in datasources["datasources"]}
    assert set(by_type) == {"tempo", "jaeger"}
    for kind, source in by_type.items():
        host, port = host_port(source["url"])
        assert host == kind and host in compose["services"], source["url"]
        assert port == listen_port[kind], source["url"]
        assert source["access"] == "proxy", "the browser cannot resolve compose service names"
    assert sum(bool(source.get("isDefault")) for source in datasources["datasources"]) == 1


def test_grafana_allows_anonymous_admin_for_local_use(compose: dict[str, Any]) -> None:
    environment = dict(item.split("=", 1) for item in compose["services"]["grafana"]["environment"])
    assert environment["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert environment["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Admin"


# --- Tempo limits ---------------------------------------------------------------------------------


def test_tempo_keeps_captured_values_whole(tempo: dict[str, Any]) -> None:
    """Tempo's 2048-byte default would cut otel-scope's longest values (UTF-8: up to 4 bytes/char)."""
    limit = tempo["distributor"]["max_attribute_bytes"]
    assert limit > TEMPO_DEFAULT_MAX_ATTRIBUTE_BYTES
    assert limit >= 4 * Settings().max_value_length


def test_tempo_accepts_traces_larger_than_its_default(tempo: dict[str, Any]) -> None:
    """One otel-scope session is one trace, and the default would refuse long sessions."""
    assert tempo["overrides"]["defaults"]["global"]["max_bytes_per_trace"] > TEMPO_DEFAULT_MAX_BYTES_PER_TRACE


def test_tempo_receivers_listen_beyond_localhost(tempo: dict[str, Any]) -> None:
    protocols = tempo["distributor"]["receivers"]["otlp"]["protocols"]
    for protocol in ("grpc", "http"):
        assert host_port(protocols[protocol]["endpoint"])[0] == "0.0.0.0"


# --- Docs ----------------------------------------------------------------------------------------


def test_backends_doc_gives_the_commands_links_and_limits() -> None:
    text = BACKENDS_DOC.read_text(encoding="utf-8")
    for needle in (
        "docker compose -f docker/compose.yaml up -d",
        "opentelemetry-instrument --scope-mode hybrid",
        "http://localhost:16686",
        "http://localhost:3000",
        "OTEL_SCOPE_UI_URL",
        'event:name = "otel_scope.locals"',
        "OTEL_SPAN_EVENT_COUNT_LIMIT",
        "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        "max_attribute_bytes",
    ):
        assert needle in text, needle
    for target in re.findall(r"\]\(([^)#\s]+)", text):
        if not target.startswith("http"):
            assert (BACKENDS_DOC.parent / target).exists(), f"broken link {target}"
    assert "collector-config/existing-collector.md" in text


# --- Live: only where a Docker daemon answers ----------------------------------------------------

LIVE_PROJECT = "otel-scope-livetest"


def _docker_skip_reason() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return "docker CLI not installed"
    try:
        info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "`docker info` timed out"
    if info.returncode != 0:
        lines = (info.stderr or info.stdout).strip().splitlines()
        return "no working Docker daemon: " + (lines[-1] if lines else f"exit {info.returncode}")
    version = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30)
    if version.returncode != 0:
        return "the docker compose plugin is not installed"
    return None


def _busy_ports(ports: list[int]) -> list[int]:
    busy = []
    for port in ports:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                busy.append(port)
    return busy


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except (urllib.error.URLError, OSError):
        return 0, ""


def _poll(url: str, accept: Any, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    status, body = 0, ""
    while time.monotonic() < deadline:
        status, body = _get(url)
        if status == 200 and accept(body):
            return body
        time.sleep(1)
    raise AssertionError(f"{url} did not answer as expected within {timeout:g}s (last status {status})")


@pytest.mark.slow
def test_live_stack_delivers_a_span_with_a_long_event_value_to_jaeger_and_tempo(
    compose: dict[str, Any],
) -> None:
    reason = _docker_skip_reason()
    if reason:
        pytest.skip(f"live backend test needs Docker: {reason}")
    host_ports = [host for service in compose["services"].values() for host, _ in published_ports(service)]
    busy = _busy_ports(host_ports)
    if busy:
        pytest.skip(f"host ports {busy} are in use (is the stack already running?)")

    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    base = ["docker", "compose", "-f", str(COMPOSE), "-p", LIVE_PROJECT]
    up_command = [*base, "up", "-d", "--wait", "--wait-timeout", "600"]
    up = subprocess.run(up_command, capture_output=True, text=True)
    try:
        assert up.returncode == 0, up.stderr
        _poll("http://127.0.0.1:13133/", lambda body: True, timeout=60)
        _poll("http://127.0.0.1:3200/ready", lambda body: "ready" in body, timeout=120)

        long_value = "v" * 4000  # above Tempo's default 2048-byte attribute cap
        provider = TracerProvider(resource=Resource.create({"service.name": "otel-scope-livetest"}))
        exporter = GrpcSpanExporter(endpoint=f"http://127.0.0.1:{OTLP_GRPC_PORT}", insecure=True)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        with provider.get_tracer(__name__).start_as_current_span("livetest") as span:
            span.add_event("otel_scope.locals", {"otel_scope.var.text": long_value})
            trace_id = format(span.get_span_context().trace_id, "032x")
        provider.shutdown()

        jaeger = _poll(
            f"http://127.0.0.1:{JAEGER_PORTS['ui']}/api/v3/traces/{trace_id}",
            lambda body: "livetest" in body,
            timeout=60,
        )
        assert long_value in jaeger
        tempo = _poll(
            f"http://127.0.0.1:3200/api/v2/traces/{trace_id}", lambda body: "livetest" in body, timeout=90
        )
        assert long_value in json.dumps(json.loads(tempo)), "Tempo truncated the event attribute"
    finally:
        subprocess.run([*base, "down", "-v", "--remove-orphans"], capture_output=True, text=True, timeout=300)
