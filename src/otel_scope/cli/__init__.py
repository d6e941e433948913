"""The ``otel-scope`` console script.

Each subcommand is one module with ``register(subparsers)``, which adds its parser and sets
``run`` (``args -> exit code``) as its default; adding a subcommand is adding its module to
:data:`COMMANDS`. A :class:`CliError` or :class:`~otel_scope.timeline.SourceError` becomes one
line on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Sequence
from typing import Protocol

from otel_scope._version import __version__
from otel_scope.cli import export, history, import_, plan, sessions, targets, view
from otel_scope.cli._common import CliError
from otel_scope.store import StoreError
from otel_scope.timeline import SourceError


class Command(Protocol):
    """A subcommand module: ``register`` adds its parser, with ``run`` as its default."""

    def register(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None: ...


COMMANDS: tuple[Command, ...] = (history, sessions, view, plan, export, import_, targets)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otel-scope",
        description="Show what otel-scope recorded: one trace per session, runtime spans and "
        "compile-time locals in one timeline. See docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``otel-scope`` with ``argv`` (default: the process arguments); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help(sys.stderr)
        return 2
    try:
        code: int = args.run(args)  # a subcommand's run(), set as its parser's default
        return code
    except (CliError, SourceError, StoreError) as exc:
        return _fail(str(exc))
    except sqlite3.Error as exc:
        return _fail(f"the local store cannot be read: {exc}")
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (head, less) stopped early. Point stdout at /dev/null so the interpreter's
        # final flush does not fail again, and exit 1 as rich does for text and Python's docs advise.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _fail(message: str) -> int:
    print(f"otel-scope: {' '.join(message.split())}", file=sys.stderr)
    return 1
