"""docs/architecture.md says what the code is: its layer list and its import table are checked."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs"))

import import_graph  # noqa: E402 - docs/ is not a package

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the backport on 3.10
    import tomli as tomllib


def _contract_layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (contract,) = [c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    assert not contract.get("ignore_imports"), "the layer contract lists exceptions again"
    return [
        " | ".join(part.strip().removeprefix("otel_scope.") for part in layer.split("|"))
        for layer in contract["layers"]
    ]


def _documented_layers() -> list[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("## Packages", 1)[1].split("\n\n")[2]  # the indented list after the intro
    layers = []
    for line in block.splitlines():
        if line.startswith("    ") and not line.startswith("     "):
            layers.append(re.split(r"\s{2,}", line.strip())[0])
    return layers


def test_the_import_table_in_the_architecture_page_is_the_real_import_graph() -> None:
    assert import_graph.current() == import_graph.render(), "run: python3 dev.py docs"


def test_the_layers_in_the_architecture_page_are_the_enforced_contract_in_order() -> None:
    assert _documented_layers() == _contract_layers()


def test_every_part_of_the_package_is_in_a_layer_of_the_contract() -> None:
    layered = {name for layer in _contract_layers() for name in layer.split(" | ")}
    assert set(import_graph.top_level_imports()) <= layered


def test_the_command_line_loads_neither_the_instrumentation_nor_the_sdk() -> None:
    # Every otel-scope command imports otel_scope.cli; reading a trace needs neither the
    # instrumentation nor the OpenTelemetry SDK, which cost about a quarter second to import.
    import subprocess

    code = (
        "import sys, otel_scope.cli; "
        "print(sorted(m for m in sys.modules if m.startswith(('otel_scope.runtime', 'otel_scope.engine', "
        "'otel_scope.compile_time', 'otel_scope.api', 'opentelemetry.sdk', 'urllib.request', 'libcst'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
