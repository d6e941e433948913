"""Configuration: one validated :class:`Settings` model and where its values come from."""

from otel_scope.config.settings import (
    SETTING_NAMES,
    ConfigError,
    Settings,
    env_var_for,
    flag_for,
    load_settings,
)

__all__ = [
    "SETTING_NAMES",
    "ConfigError",
    "Settings",
    "env_var_for",
    "flag_for",
    "load_settings",
]
