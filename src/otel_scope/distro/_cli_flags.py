"""Entry point of the ``opentelemetry_environment_variables`` group: otel-scope's CLI flags.

The stock ``opentelemetry-instrument`` CLI adds a flag per ``OTEL_*`` name found here, spelled
with underscores (``--scope_mode``). Users type ``--scope-mode``; argparse does not equate the
two. So, when (and only when) this module is loaded by the CLI's ``run()``, it rewrites the
``--scope-...`` option names in ``sys.argv`` to the underscore form before the CLI parses them.
It touches nothing after the program's own name, and never raises.
"""

import sys
from typing import TYPE_CHECKING

from otel_scope.config.environment_variables import *  # noqa: F403  (the flags are these names)

if TYPE_CHECKING:
    from types import FrameType


def _called_by_stock_cli() -> bool:
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "run" and frame.f_globals.get("__name__") == (
            "opentelemetry.instrumentation.auto_instrumentation"
        ):
            return True
        frame = frame.f_back
    return False


def _normalise_argv(argv: list[str]) -> list[str]:
    """``--scope-x-y[=v]`` to ``--scope_x_y[=v]`` among the CLI's own options, stopping at the command."""
    out = list(argv)
    i = 1
    while i < len(out):
        token = out[i]
        if token == "--" or not token.startswith("-"):
            break  # the command: everything after it belongs to the user's program
        name, eq, value = token.partition("=")
        if name.startswith("--scope-"):
            out[i] = name.replace("-", "_").replace("__scope_", "--scope_", 1) + eq + value
        if not eq and token not in ("-h", "--help", "--version"):
            i += 1  # every stock option takes exactly one value
        i += 1
    return out


try:
    if _called_by_stock_cli():
        sys.argv[:] = _normalise_argv(sys.argv)
except Exception:  # never break the CLI for everyone because of a flag spelling
    pass
