"""The words otel-scope's settings, plans and spans share, defined once.

A mode, a level, a mechanism or a session kind is a user-visible string (a ``--scope-mode`` value,
an ``otel_scope.mechanism`` attribute), so each enum is a ``str`` subclass: members compare equal
to the strings users write and serialize as themselves. Everything that lists the accepted values
in a message, a ``choices=`` or a check takes them from here, so they cannot drift apart.
"""

from __future__ import annotations

from enum import Enum


class _Word(str, Enum):
    """A member prints, formats and serializes as its value on every Python (3.12 changed how
    mixed-in enums format: ``f"{Mode.HYBRID}"`` would read ``Mode.HYBRID`` there)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Mode(_Word):
    """How a target is traced; ``off`` exists only process-wide (``--scope-mode off``)."""

    OFF = "off"
    RUNTIME = "runtime"
    COMPILE_TIME = "compile_time"
    HYBRID = "hybrid"
    AUTO = "auto"


class Level(_Word):
    """How deep compile-time capture goes, shallowest first (the order is the declaration's)."""

    BOUNDARIES = "boundaries"
    LOCALS = "locals"
    LINES = "lines"
    EXPRESSIONS = "expressions"


class Mechanism(_Word):
    """What produced a span or event (``otel_scope.mechanism``), or what a function has installed."""

    OFF = "off"
    RUNTIME = "runtime"
    COMPILE_TIME = "compile_time"
    HYBRID = "hybrid"


class SessionKind(_Word):
    """What one session (one trace ID) spans: the process, each request, or explicit blocks."""

    PROCESS = "process"
    REQUEST = "request"
    EXPLICIT = "explicit"


MODES: tuple[str, ...] = tuple(m.value for m in Mode)
# What one target may ask for: ``auto`` first, as the default the planner resolves.
TARGET_MODES: tuple[str, ...] = (
    Mode.AUTO.value,
    Mode.RUNTIME.value,
    Mode.COMPILE_TIME.value,
    Mode.HYBRID.value,
)
LEVELS: tuple[str, ...] = tuple(level.value for level in Level)
LEVEL_ORDER: dict[str, int] = {level: rank for rank, level in enumerate(LEVELS)}
SESSION_KINDS: tuple[str, ...] = tuple(k.value for k in SessionKind)


def mechanism(runtime: bool, compile_time: bool) -> Mechanism:
    """The mechanism of a function that has a runtime wrapper and/or compile-time capture."""
    if runtime:
        return Mechanism.HYBRID if compile_time else Mechanism.RUNTIME
    return Mechanism.COMPILE_TIME if compile_time else Mechanism.OFF
