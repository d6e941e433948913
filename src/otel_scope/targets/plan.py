"""What one function gets: the capture plan handed to the mechanisms.

A :class:`FunctionPlan` is the planner's output for one function; its :class:`CapturePlan` is the
part the compile-time rewriter needs (which locals, which lines, how deep).
"""

from __future__ import annotations

from dataclasses import dataclass, field

LEVEL_ORDER = {"boundaries": 0, "locals": 1, "lines": 2, "expressions": 3}


@dataclass(frozen=True)
class CapturePlan:
    """Compile-time capture for one function.

    ``locals`` is ``None`` for every local variable, else the names to capture. ``lines`` get a
    line event each. ``level``: ``boundaries`` (a span per call only), ``locals`` (plus variable
    events), ``lines`` (plus an event for every executed line), ``expressions`` (plus the values
    of sub-expressions on chosen lines).
    """

    locals: frozenset[str] | None = None
    lines: tuple[int, ...] = ()
    level: str = "locals"
    target: str = ""

    def at_least(self, level: str) -> bool:
        return LEVEL_ORDER[self.level] >= LEVEL_ORDER[level]

    def captures(self, name: str) -> bool:
        """Whether assignments to local ``name`` are captured under this plan."""
        if not self.at_least("locals"):
            return False
        return self.locals is None or name in self.locals

    def key(self) -> str:
        """A stable text form, used in cache keys."""
        names = "*" if self.locals is None else ",".join(sorted(self.locals))
        return f"{self.level}|{names}|{'+'.join(map(str, self.lines))}"


@dataclass(frozen=True)
class FunctionPlan:
    """The planner's decision for one function, with the reason users see in ``otel-scope plan``."""

    module: str
    qualname: str
    runtime: bool = False
    capture: CapturePlan | None = None  # compile-time capture, if any
    state: bool = False  # capture ``self`` attributes before/after (runtime)
    reasons: tuple[str, ...] = field(default=())

    @property
    def mechanism(self) -> str:
        if self.runtime and self.capture is not None:
            return "hybrid"
        return "compile_time" if self.capture is not None else "runtime" if self.runtime else "off"
