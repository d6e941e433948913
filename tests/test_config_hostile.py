"""Hostile or broken configuration: one line naming what is wrong, and the program runs unchanged.

Each case runs a real program under ``opentelemetry-instrument`` with the configuration in place.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_scope.config import ConfigError, load_settings
from scope_run import run_instrumented

APP = "print('the program ran')\n"

PYPROJECTS: dict[str, bytes] = {
    "tool is a string": b'tool = "x"\n',
    "tool is a number": b"tool = 5\n",
    "not UTF-8": b'[tool.otel-scope]\nmode = "\xff\xfe runtime"\n',
    "arrays nested 5,000 deep": b"[tool.otel-scope]\ntargets = " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "a value of a megabyte": b'[tool.otel-scope]\nmode = "' + b"x" * 1_000_000 + b'"\n',
    "a nested list value": b"[tool.otel-scope]\ntargets = [[1, [2]]]\n",
}


@pytest.mark.parametrize("case", PYPROJECTS)
def test_a_broken_pyproject_gives_one_short_line_and_the_program_runs(tmp_path: Path, case: str) -> None:
    (tmp_path / "pyproject.toml").write_bytes(PYPROJECTS[case])
    (tmp_path / "app.py").write_text(APP)
    run = run_instrumented("app.py", [], {"OTEL_TRACES_EXPORTER": "none"}, tmp_path, cwd=tmp_path)
    assert (run.returncode, run.stdout) == (0, "the program ran\n")
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("otel-scope: ") and "pyproject.toml" in lines[0] and "accepted" in lines[0]
    assert len(lines[0]) < 700


@pytest.mark.parametrize(
    "template",
    [
        "http://ui/trace/{trace_id}/{span_id}",
        "http://ui/trace/{trace_id:>20000000}",
        "http://ui/trace/{trace_id!r}",
        "http://ui/trace/{trace_id}{",
        "http://ui/trace/",
    ],
)
def test_a_ui_url_template_with_another_field_or_a_format_spec_is_refused_at_start(
    tmp_path: Path, template: str
) -> None:
    with pytest.raises(ConfigError, match=r"accepted: a URL containing \{trace_id\}"):
        load_settings({"OTEL_SCOPE_UI_URL": template}, cwd=str(tmp_path))
    (tmp_path / "app.py").write_text(APP)
    run = run_instrumented("app.py", [], {"OTEL_SCOPE_UI_URL": template}, tmp_path, cwd=tmp_path)
    assert (run.returncode, run.stdout) == (0, "the program ran\n")
    (line,) = run.stderr.strip().splitlines()
    assert "OTEL_SCOPE_UI_URL" in line and len(line) < 500


def test_a_ui_url_template_with_escaped_braces_is_accepted(tmp_path: Path) -> None:
    url = "http://ui/{{x}}/trace/{trace_id}"
    assert load_settings({"OTEL_SCOPE_UI_URL": url}, cwd=str(tmp_path)).ui_url == url


def test_a_store_path_under_an_unknown_user_is_refused_not_created_in_the_working_directory(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match="existing user"):
        load_settings({"OTEL_SCOPE_STORE_PATH": "~nosuchuser-otel-scope/x.sqlite3"}, cwd=str(tmp_path))
    (tmp_path / "app.py").write_text(APP)
    env = {"OTEL_SCOPE_STORE_PATH": "~nosuchuser-otel-scope/x.sqlite3", "OTEL_TRACES_EXPORTER": "otel_scope"}
    run = run_instrumented("app.py", [], env, tmp_path, cwd=tmp_path)
    assert (run.returncode, run.stdout) == (0, "the program ran\n")
    assert not any(p.name.startswith("~") for p in tmp_path.iterdir())
    assert "OTEL_SCOPE_STORE_PATH" in run.stderr
