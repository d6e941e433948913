"""otel-scope next to opentelemetry-distro and another instrumentation (requests).

The extra packages are installed with pip into a directory put on PYTHONPATH, so the stock CLI
finds two distros, two configurators and the requests instrumentor, exactly as in a user's venv.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scope_run import run_instrumented

EXTRA = [
    "opentelemetry-distro==0.66b2",
    "opentelemetry-instrumentation-requests==0.66b2",
    "opentelemetry-util-http==0.66b2",
    "requests",
    "urllib3",
    "idna",
    "certifi",
    "charset-normalizer",
]


@pytest.fixture(scope="module")
def extra_packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("extra")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), *EXTRA],
        check=True,
        capture_output=True,
    )
    return target


@pytest.mark.parametrize(
    "selection",
    [[], ["--distro", "otel_scope", "--configurator", "otel_scope"]],
    ids=["no-selection", "explicit-selection"],
)
def test_runtime_spans_and_requests_spans_share_the_session_trace(
    otlp_receiver, tmp_path: Path, extra_packages: Path, selection: list[str]
) -> None:
    env = {**otlp_receiver.env("grpc"), "PYTHONPATH": str(extra_packages)}
    flags = [*selection, "--scope-mode", "runtime", "--scope-targets", "svc.client:fetch"]
    run = run_instrumented("app_requests.py", flags, env, tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "status 204\n"
    assert "Traceback" not in run.stderr
    spans = otlp_receiver.wait_for(
        lambda s: any(x.name == "svc.client.fetch" for x in s) and any(x.name == "GET" for x in s)
    )
    fetch = next(s for s in spans if s.name == "svc.client.fetch")
    get = next(s for s in spans if s.name == "GET")
    assert get.parent_span_id == fetch.span_id  # the requests span nests under ours
    assert get.trace_id == fetch.trace_id == run.session_trace_id
