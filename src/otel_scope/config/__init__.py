"""Configuration: what users write (settings and target patterns), validated in one place.

Target patterns live here, not in ``targets``, because they are part of the settings language:
``load_settings`` parses them so that a bad pattern is refused at start, with the accepted forms.
``targets`` decides what to do with them.
"""

from typing import TYPE_CHECKING, Any

from otel_scope import _lazy

if TYPE_CHECKING:
    from otel_scope.config.patterns import (
        ACCEPTED_FORMS,
        PatternError,
        TargetPattern,
        never_instrumented,
        parse_pattern,
        parse_patterns,
    )
    from otel_scope.config.settings import (
        SETTING_NAMES,
        ConfigError,
        Settings,
        env_var_for,
        flag_for,
        load_settings,
    )

__all__ = [
    "ACCEPTED_FORMS",
    "SETTING_NAMES",
    "ConfigError",
    "PatternError",
    "Settings",
    "TargetPattern",
    "env_var_for",
    "flag_for",
    "load_settings",
    "never_instrumented",
    "parse_pattern",
    "parse_patterns",
]

_SOURCES = {
    **dict.fromkeys(
        (
            "ACCEPTED_FORMS",
            "PatternError",
            "TargetPattern",
            "never_instrumented",
            "parse_pattern",
            "parse_patterns",
        ),
        "otel_scope.config.patterns",
    ),
    **dict.fromkeys(
        ("SETTING_NAMES", "ConfigError", "Settings", "env_var_for", "flag_for", "load_settings"),
        "otel_scope.config.settings",
    ),
}


def __getattr__(name: str) -> Any:
    """The names above on first use. The stock CLI's own process imports this package for
    ``environment_variables`` (the flag names) alone, before it starts the program: it must not
    pay for the settings model and the pattern grammar."""
    return _lazy.attribute(__name__, _SOURCES, name, globals())
