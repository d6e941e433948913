"""Planted secrets never leave the process, in any mode, by any path (issue 15).

``tests/apps/app_secrets.py`` holds a secret of every kind the issue lists (vault/markers.py
keeps the list). It runs for real under ``opentelemetry-instrument`` in runtime, compile-time and
hybrid modes, exporting over OTLP to the test receiver and into the local store at once. Then
every string that arrived over the wire, the raw bytes of the store files, and both export
formats are scanned for every marker. Values that only look like secrets (a real SQLAlchemy
Session, ``key=``, ``author=``...) must still be shown.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from scope_run import APPS, run_instrumented
from test_cli_support import run_cli

_spec = importlib.util.spec_from_file_location("vault_markers", APPS / "vault" / "markers.py")
assert _spec is not None and _spec.loader is not None
markers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(markers)
SECRETS: dict[str, str] = markers.SECRETS
LOOK_ALIKES: dict[str, str] = markers.LOOK_ALIKES

ARGV = [
    f"--password={SECRETS['command line --password=']}",
    "--token",
    SECRETS["command line --token VALUE"],
    "--db",
    f"postgresql://app:{SECRETS['command line URL password']}@db/shop",
]
MODES = {
    "runtime": ["--scope-mode", "runtime", "--scope-targets", "vault.bank:*"],
    "compile_time": ["--scope-mode", "compile_time", "--scope-locals", "vault.bank:*"],
    "hybrid": ["--scope-mode", "hybrid", "--scope-targets", "vault.bank:*", "--scope-locals", "vault.bank:*"],
}


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (str(k), *_strings(v))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return [str(value)]


def _wire_text(spans: list) -> str:
    """Every string of every span that arrived: names, attributes, events, status, resource."""
    parts: list[str] = []
    for s in spans:
        parts += [s.name, s.status_message, *_strings(s.attributes), *_strings(s.resource_attributes)]
        for e in s.events:
            parts += [e.name, *_strings(e.attributes)]
    return "\n".join(parts)


def leaks(text: str) -> list[str]:
    """The kinds of secret whose marker appears in ``text``."""
    return [kind for kind, marker in SECRETS.items() if marker in text]


@pytest.mark.parametrize("mode", MODES)
def test_no_planted_secret_reaches_the_wire_the_store_or_an_export(
    otlp_receiver, tmp_path: Path, mode: str
) -> None:
    env = {**otlp_receiver.env("grpc"), "OTEL_TRACES_EXPORTER": "otlp,otel_scope"}
    run = run_instrumented("app_secrets.py", MODES[mode], env, tmp_path, argv=ARGV, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.endswith("done\n")
    spans = otlp_receiver.wait_for(lambda s: any(x.name == "otel_scope.session" for x in s), timeout=30)
    wire = _wire_text(spans)
    # The run recorded what it should: values of every kind arrived, so a clean scan means
    # redaction, not an empty trace.
    assert "[redacted]" in wire and "caught" not in wire
    if mode != "compile_time":
        assert "vault.bank.fetch" in {s.name for s in spans}

    store_files = sorted(tmp_path.glob("store.sqlite3*"))
    assert store_files, "the local store was not written"
    stored = b"".join(p.read_bytes() for p in store_files).decode("utf-8", "replace")
    assert run.session_trace_id is not None
    exports = {}
    for fmt in ("otlp-json", "jaeger-json"):
        result = run_cli(
            "export", run.session_trace_id, "--format", fmt, cwd=tmp_path, store=tmp_path / "store.sqlite3"
        )
        assert result.returncode == 0, result.stderr
        exports[fmt] = result.stdout
        json.loads(result.stdout)

    found = {
        "OTLP wire": leaks(wire),
        "local store": leaks(stored),
        "otlp-json export": leaks(exports["otlp-json"]),
        "jaeger-json export": leaks(exports["jaeger-json"]),
    }
    assert found == {where: [] for where in found}


@pytest.mark.parametrize("mode", ["runtime", "hybrid"])
def test_values_that_only_look_like_secrets_are_shown(otlp_receiver, tmp_path: Path, mode: str) -> None:
    env = otlp_receiver.env("grpc")
    run = run_instrumented("app_secrets.py", MODES[mode], env, tmp_path, argv=ARGV, timeout=120)
    assert run.returncode == 0, run.stderr
    spans = otlp_receiver.wait_for(lambda s: any(x.name == "vault.bank.lookalikes" for x in s), timeout=30)
    (call,) = [s for s in spans if s.name == "vault.bank.lookalikes"]
    args = call.attributes
    assert args["otel_scope.arg.session"].startswith("Session(")
    assert args["otel_scope.arg.transaction"].startswith("SessionTransaction(")
    assert "session=[redacted]" not in args["otel_scope.arg.transaction"]
    for name, value in LOOK_ALIKES.items():
        assert args[f"otel_scope.arg.{name}"] == repr(value)
    assert LOOK_ALIKES["author"] in call.attributes["otel_scope.return"]
    session = next(s for s in spans if s.name == "otel_scope.session")
    command = session.attributes["otel_scope.session.command"]
    assert "--db postgresql://app:[redacted]@db/shop" in command and "--token [redacted]" in command
