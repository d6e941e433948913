"""Targets and planning: which functions are instrumented, by which mechanism, how deeply.

The patterns users write are parsed in :mod:`otel_scope.config`; this package turns them into
:class:`Request` objects and decides, per function, what each gets (:class:`Decision`).
"""

from otel_scope.targets.plan import CapturePlan
from otel_scope.targets.planner import (
    Decision,
    Request,
    decide,
    decide_function,
    production_limits,
    requests_from_settings,
)

__all__ = [
    "CapturePlan",
    "Decision",
    "Request",
    "decide",
    "decide_function",
    "production_limits",
    "requests_from_settings",
]
