"""The settings model: precedence, validation messages, and every setting's bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_scope.config import SETTING_NAMES, ConfigError, Settings, env_var_for, load_settings


def test_defaults_match_the_documented_table(tmp_path: Path) -> None:
    s = load_settings({}, cwd=str(tmp_path))
    assert (s.mode, s.level, s.environment, s.session) == ("auto", "locals", "development", "process")
    assert s.targets == s.locals == s.state == s.exclude == ()


def test_environment_beats_pyproject_and_pyproject_beats_default(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.otel-scope]\nmode = "runtime"\nlevel = "lines"\ntargets = ["a.b:f", "c.d"]\n'
    )
    s = load_settings({"OTEL_SCOPE_MODE": "hybrid"}, cwd=str(tmp_path))
    assert s.mode == "hybrid"  # environment (and so the CLI flag) wins
    assert s.level == "lines"  # from pyproject
    assert [p.text for p in s.targets] == ["a.b:f", "c.d"]


def test_otel_scope_config_names_another_toml_file(tmp_path: Path) -> None:
    cfg = tmp_path / "scope.toml"
    cfg.write_text('[tool.otel-scope]\nsession = "explicit"\n')
    assert load_settings({"OTEL_SCOPE_CONFIG": str(cfg)}, cwd="/").session == "explicit"


def test_deployment_environment_from_resource_attributes(tmp_path: Path) -> None:
    env = {"OTEL_RESOURCE_ATTRIBUTES": "service.name=x,deployment.environment.name=production"}
    assert load_settings(env, cwd=str(tmp_path)).environment == "production"
    env["OTEL_SCOPE_ENVIRONMENT"] = "development"
    assert load_settings(env, cwd=str(tmp_path)).environment == "development"


BAD_VALUES = {
    "mode": "hybird",
    "targets": "shop orders",
    "locals": "shop.inv:check@x",
    "level": "everything",
    "state": ":nothing",
    "exclude": "pkg.*:f",
    "environment": "staging",
    "session": "thread",
    "capture_args": "maybe",
    "capture_return": "2",
    "user_repr": "sure",
    "max_value_length": "-3",
    "max_depth": "deep",
    "max_items": "0",
    "redact": None,
    "redact_exclude": None,
    "rate_limit": "fast",
    "capture_rate_limit": "-1",
    "max_events": "0",
    "loop_sample": "zero",
    "call_sampling": "sometimes",
    "call_sample_first": "-1",
    "call_sample_rate": "fast",
    "overhead_budget": "1.5",
    "production_compile_time": "perhaps",
    "ui_url": "http://jaeger/without-placeholder",
    "store_path": None,
    "store_max_age_days": "-1",
    "store_max_mb": "0",
    "escalation": "sometimes",
    "control": "nope",
    "opamp_endpoint": None,
    "messages": "lots",
}


def test_every_setting_has_a_bad_value_case() -> None:
    assert set(BAD_VALUES) == set(SETTING_NAMES)


@pytest.mark.parametrize("name", [n for n, v in BAD_VALUES.items() if v is not None])
def test_bad_value_names_setting_value_and_what_is_accepted(name: str, tmp_path: Path) -> None:
    var = env_var_for(name)
    with pytest.raises(ConfigError) as info:
        load_settings({var: BAD_VALUES[name]}, cwd=str(tmp_path))
    message = str(info.value)
    assert "\n" not in message
    assert var in message and f"--scope-{name.replace('_', '-')}" in message
    assert repr(BAD_VALUES[name]) in message
    assert "accepted" in message


def test_unknown_pyproject_key_lists_the_accepted_keys(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.otel-scope]\nmodes = "hybrid"\n')
    with pytest.raises(ConfigError, match="accepted keys: mode, targets"):
        load_settings({}, cwd=str(tmp_path))


def test_broken_toml_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.otel-scope\n")
    with pytest.raises(ConfigError, match="valid TOML"):
        load_settings({}, cwd=str(tmp_path))


def test_booleans_and_numbers_accept_common_spellings(tmp_path: Path) -> None:
    s = load_settings({"OTEL_SCOPE_USER_REPR": "Yes", "OTEL_SCOPE_RATE_LIMIT": "2.5"}, cwd=str(tmp_path))
    assert s.user_repr is True and s.rate_limit == 2.5
    assert isinstance(s, Settings)
