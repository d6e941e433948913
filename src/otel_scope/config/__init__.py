"""Configuration: what users write (settings and target patterns), validated in one place.

Target patterns live here, not in ``targets``, because they are part of the settings language:
``load_settings`` parses them so that a bad pattern is refused at start, with the accepted forms.
``targets`` decides what to do with them.
"""

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
