"""What one function gets from compile-time capture: the plan handed to the rewriter.

The planner's decision for a function (``planner.Decision``) carries one :class:`CapturePlan`:
which locals, which lines, how deep.
"""

from __future__ import annotations

from typing import NamedTuple

from otel_scope.vocabulary import LEVEL_ORDER


class CapturePlan(NamedTuple):
    """Compile-time capture for one function.

    ``locals`` is ``None`` for every local variable, else the names to capture. ``lines`` get a
    line event each. ``level``: ``boundaries`` (a span per call only), ``locals`` (plus variable
    events), ``lines`` (plus an event for every executed line), ``expressions`` (plus the values
    of sub-expressions on chosen lines). A named tuple (a cache key): compared and hashed by
    value, and cheaper than a dataclass to create at start.
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
