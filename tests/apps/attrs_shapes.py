"""attrs classes whose generated ``__init__`` runs user validators (for escalation's tests)."""

from __future__ import annotations

import attrs


@attrs.define(slots=True)
class Bounded:
    value: int = attrs.field()

    @value.validator
    def _at_most_100(self, attribute: attrs.Attribute[int], value: int) -> None:
        if value > 100:
            raise ValueError(f"{value} is over 100")
