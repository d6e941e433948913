"""The SDK set-up otel-scope's configurator does, under the real ``opentelemetry-instrument``.

With traces only asked for, it builds the tracer provider itself, without the SDK configurator's
module (which imports the metrics and logs SDKs); anything more goes to the SDK's configurator.
Both must give the program the same tracer provider, and neither may stop the program, or
otel-scope, on a value the SDK rejects.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from scope_run import BIN, base_env, run_instrumented, run_tree

CLI = str(BIN / "opentelemetry-instrument")

# Prints, as its last line, what the program got: the global tracer provider's resource,
# sampler, ID generator and export pipeline, and whether the SDK's configurator module ran.
_DESCRIBE = """
import json, sys
from opentelemetry import trace
p = trace.get_tracer_provider()
print(json.dumps({
    # service.instance.id is new in every process: only its presence compares.
    "resource": {k: (v if k != "service.instance.id" else "set") for k, v in p.resource.attributes.items()},
    "sampler": p.sampler.get_description(),
    "ids": type(p.id_generator).__name__,
    "pipeline": [
        [type(s).__name__, type(getattr(s, "exporter", None)).__name__]
        for s in p._active_span_processor._span_processors
    ],
    "sdk_configurator": "opentelemetry.sdk._configuration" in sys.modules,
    "metrics_sdk": "opentelemetry.sdk.metrics" in sys.modules,
}))
"""


def _describe(tmp_path: Path, env: dict[str, str]) -> dict[str, object]:
    run = run_tree(
        [CLI, "--scope-mode", "off", sys.executable, "-c", _DESCRIBE],
        tmp_path,
        base_env(tmp_path, {"OTEL_SCOPE_CONTROL": "false", **env}),
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    result: dict[str, object] = json.loads(run.stdout.splitlines()[-1])
    return result


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_TRACES_EXPORTER": "otel_scope"},
        {
            "OTEL_TRACES_EXPORTER": "otel_scope",
            "OTEL_SERVICE_NAME": "checkout",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test,team=payments",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.25",
        },
        {"OTEL_TRACES_EXPORTER": "console,otel_scope", "OTEL_TRACES_SAMPLER": "always_off"},
        {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        },
    ],
    ids=["local-store", "resource-and-ratio-sampler", "console-always-off", "otlp-http"],
)
def test_the_traces_only_setup_gives_the_program_the_provider_the_sdks_configurator_gives(
    tmp_path: Path, env: dict[str, str]
) -> None:
    traces_only = _describe(tmp_path, env)
    # A logs exporter asks for more than traces: the SDK's own configurator does the set-up.
    whole_sdk = _describe(tmp_path, {**env, "OTEL_LOGS_EXPORTER": "console"})
    assert (traces_only["sdk_configurator"], whole_sdk["sdk_configurator"]) == (False, True)
    assert traces_only["metrics_sdk"] is False
    for key in ("resource", "sampler", "ids", "pipeline"):
        assert traces_only[key] == whole_sdk[key], key
    assert traces_only["ids"] == "PrivateRandomIdGenerator"
    assert all(kind == "ScopeSpanProcessor" for kind, _ in traces_only["pipeline"])  # type: ignore[attr-defined]
    if "OTEL_SERVICE_NAME" in env:
        assert traces_only["resource"]["service.name"] == "checkout"  # type: ignore[index]
        assert traces_only["resource"]["team"] == "payments"  # type: ignore[index]
        assert "0.25" in str(traces_only["sampler"])


def test_a_metrics_exporter_gets_the_sdks_whole_setup_and_spans_still_flow(
    otlp_receiver, tmp_path: Path
) -> None:
    program = (
        "from opentelemetry import metrics\n"
        "metrics.get_meter('shop').create_counter('orders.placed').add(3)\n"
        "import json\n"
        "json.dumps({'order': 1})\n"
    )
    env = {**otlp_receiver.env("grpc"), "OTEL_METRICS_EXPORTER": "console"}
    run = run_tree(
        [CLI, "--scope-mode", "runtime", "--scope-targets", "json:dumps", sys.executable, "-c", program],
        tmp_path,
        base_env(tmp_path, env),
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "orders.placed" in run.stdout  # the console metrics exporter printed the counter at exit
    otlp_receiver.wait_for(lambda spans: any(s.name == "json.dumps" for s in spans))


def test_an_otlp_protocol_the_exporters_do_not_speak_is_one_line_and_spans_arrive_over_http(
    otlp_receiver, tmp_path: Path
) -> None:
    env = {
        **otlp_receiver.env("http"),
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json",
    }
    run = run_instrumented("app_runtime.py", ["--scope-targets", "svc.orders:*"], env, tmp_path)
    assert run.returncode == 3  # the program's own exit code
    assert "Traceback" not in run.stderr, run.stderr
    lines = [line for line in run.stderr.splitlines() if "http/json" in line]
    assert len(lines) == 1, run.stderr
    assert "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" in lines[0] and "accepted: grpc, http/protobuf" in lines[0]
    spans = otlp_receiver.wait_for(lambda s: any(x.name == "svc.orders.validate" for x in s))
    assert {s.protocol for s in spans} == {"http"}


def test_a_value_the_sdks_configurator_rejects_is_one_line_and_traces_still_flow(
    otlp_receiver, tmp_path: Path
) -> None:
    """The SDK raises on an unsupported metrics protocol before it sets up tracing; the stock CLI
    would then print two tracebacks and start no instrumentation at all."""
    env = {
        **otlp_receiver.env("grpc"),
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/json",
    }
    run = run_instrumented("app_runtime.py", ["--scope-targets", "svc.orders:*"], env, tmp_path)
    assert run.returncode == 3
    assert "Traceback" not in run.stderr, run.stderr
    lines = [line for line in run.stderr.splitlines() if "configuration failed" in line]
    assert len(lines) == 1 and "Unsupported OTLP protocol 'http/json'" in lines[0], run.stderr
    otlp_receiver.wait_for(lambda s: any(x.name == "svc.orders.validate" for x in s))


# Asks _collector_reachable about each endpoint given, then says whether the IDNA codec loaded.
_PROBE = """
import json, sys
from otel_scope.distro.configurator import _collector_reachable
print(json.dumps([[_collector_reachable(e) for e in sys.argv[1:]], "encodings.idna" in sys.modules]))
"""


def test_the_collector_probe_finds_a_listener_on_localhost_without_loading_the_idna_codec(tmp_path):
    """The probe runs at every start with no exporter set; the codec would cost about 1 ms."""
    with socket.socket() as listening, socket.socket() as closed:
        listening.bind(("localhost", 0))
        listening.listen()
        closed.bind(("localhost", 0))  # bound, never listening: the port refuses connections
        endpoints = [f"http://localhost:{s.getsockname()[1]}" for s in (listening, closed)]
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, *endpoints],
            env=base_env(tmp_path),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [[True, False], False]
