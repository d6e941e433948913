"""The emitted-data table documents every name otel-scope emits (semconv.py is the source)."""

from __future__ import annotations

from pathlib import Path

from otel_scope import semconv

DOC = Path(__file__).resolve().parents[1] / "docs" / "emitted-data.md"


def test_every_emitted_name_is_documented() -> None:
    text = DOC.read_text()
    names = {
        value
        for key, value in vars(semconv).items()
        if key.isupper() and isinstance(value, str) and "." in value and not value.startswith(".")
    }
    missing = sorted(n.rstrip(".") for n in names if n.rstrip(".") not in text)
    assert not missing, f"document these in docs/emitted-data.md: {missing}"


def test_names_use_semantic_conventions_or_the_otel_scope_prefix() -> None:
    for key, value in vars(semconv).items():
        if key.isupper() and isinstance(value, str) and "." in value and not value.startswith("."):
            assert value.startswith(("otel_scope.", "code.", "exception.")), (key, value)
