"""How hard the property tests search, so that CI can cover four Pythons in its time budget.

Full strength by default. ``dev.py test`` sets ``OTEL_SCOPE_TEST_EXAMPLES=0.25`` for the extra
interpreters: their runs look for version-specific breakage, which shows on the first examples,
while the main interpreter's run keeps the full search.
"""

from __future__ import annotations

import os

SCALE = float(os.environ.get("OTEL_SCOPE_TEST_EXAMPLES", "1"))


def examples(count: int) -> int:
    """``count`` examples scaled for this run (never fewer than 10)."""
    return max(10, round(count * SCALE))
