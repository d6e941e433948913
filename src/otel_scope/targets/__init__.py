"""Targets and planning: which functions are instrumented, and how deeply."""

from otel_scope.targets.patterns import (
    ACCEPTED_FORMS,
    PatternError,
    TargetPattern,
    never_instrumented,
    parse_pattern,
    parse_patterns,
)

__all__ = [
    "ACCEPTED_FORMS",
    "PatternError",
    "TargetPattern",
    "never_instrumented",
    "parse_pattern",
    "parse_patterns",
]
