"""Package attributes imported on first use (PEP 562), for the packages every start imports.

The stock CLI imports otel-scope in its own process (for the flag names) and again in the
program, even with ``--scope-mode off``: a package there re-exports its names through
:func:`attribute` so that importing it costs nothing until a name is used.

The import goes through ``__import__``, not :func:`importlib.import_module`: the latter bypasses
the interpreter's import timing, so ``python -X importtime`` (and ``benchmarks/bench_startup.py``)
would not see these modules at all.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any


def attribute(package: str, sources: Mapping[str, str], name: str, namespace: dict[str, Any]) -> Any:
    """``name`` of ``package``, imported from its module in ``sources`` and kept in ``namespace``
    (the package's globals, so that later lookups are plain module attributes)."""
    module = sources.get(name)
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    __import__(module)
    value = getattr(sys.modules[module], name)
    namespace[name] = value
    return value
