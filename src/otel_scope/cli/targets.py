"""``otel-scope targets list|add|remove --pid PID [PATTERN ...]``: live control of a running process.

Talks to the process's control socket (see ``docs/live-control.md``); a change is applied by the
time the command returns, with no restart. Exit code 0 when everything asked for was done, 1 when
something was refused (each refusal says why), as for every other ``otel-scope`` error.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from rich.text import Text

from otel_scope.cli._common import CliError, make_console, print_json
from otel_scope.vocabulary import LEVELS, TARGET_MODES


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "targets",
        help="list, add or remove targets of a running process",
        description="Change what a running process traces, with no restart: the process must run under "
        "opentelemetry-instrument with otel-scope, as your user. See docs/live-control.md.",
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="targets, instrumented functions (calls seen) and escalations")
    add = actions.add_parser("add", help="add targets; takes the options of otel_scope.trace()")
    add.add_argument("patterns", nargs="+", metavar="PATTERN", help="target patterns")
    add.add_argument(
        "--locals",
        metavar="NAMES",
        help="capture these locals at compile time ('*' or comma-separated names)",
    )
    add.add_argument("--lines", metavar="N+M", help="line events for these lines (e.g. 15+22)")
    add.add_argument("--level", choices=LEVELS, help="capture level")
    add.add_argument("--mode", choices=TARGET_MODES, help="mechanism (default auto: the planner decides)")
    remove = actions.add_parser("remove", help="remove targets (patterns as 'list' shows them) or --all")
    remove.add_argument("patterns", nargs="*", metavar="PATTERN", help="target patterns")
    remove.add_argument("--all", action="store_true", help="every target, restoring every function")
    for action, sub in (("list", listing), ("add", add), ("remove", remove)):
        sub.add_argument("--pid", type=_pid, required=True, help="the process to control")
        sub.add_argument("--json", action="store_true", help="print the process's reply as JSON")
        sub.set_defaults(run=run, action=action)


def _pid(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a process ID")
    return int(text)


def run(args: argparse.Namespace) -> int:
    from otel_scope.control.client import ControlError, send

    message = _message(args)
    try:
        reply = send(args.pid, message)
    except ControlError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print_json(reply)
        return 0 if reply.get("ok") else 1
    if "results" not in reply and not reply.get("ok"):
        raise CliError(f"process {args.pid} refused: {reply.get('error', 'no reason given')}")
    if args.action == "list":
        _print_list(reply)
        return 0
    if args.action == "add":
        return _print_added(reply)
    _print_removed(reply)
    return 0


def _message(args: argparse.Namespace) -> dict[str, Any]:
    if args.action == "list":
        return {"op": "list"}
    if args.action == "remove":
        if args.all == bool(args.patterns):
            raise CliError("'remove' takes PATTERN ... or --all")
        return {"op": "remove", "all": True} if args.all else {"op": "remove", "patterns": args.patterns}
    message: dict[str, Any] = {"op": "add", "patterns": args.patterns}
    options = {"locals": args.locals, "lines": args.lines, "level": args.level, "mode": args.mode}
    message.update({key: value.strip() for key, value in options.items() if value is not None})
    return message


# -- output ----------------------------------------------------------------------------------------
def _options(row: dict[str, Any]) -> str:
    parts = []
    if row.get("mode") not in (None, "auto"):
        parts.append(f"mode {row['mode']}")
    if row.get("locals") is not None:
        parts.append("locals " + (row["locals"] if row["locals"] == "*" else ",".join(row["locals"])))
    if row.get("lines"):
        parts.append("lines " + "+".join(map(str, row["lines"])))
    if row.get("level"):
        parts.append(f"level {row['level']}")
    if row.get("state"):
        parts.append("state")
    return ", ".join(parts) or ("span per call" if row.get("runtime", True) else "-")


def _mechanism(row: dict[str, Any]) -> str:
    """``runtime`` plus how calls reach the span: the function's code (every reference) or a
    wrapper at its attribute (callers that looked it up there)."""
    installed = row.get("installed")
    return f"{row['mechanism']}, {installed}" if installed else row["mechanism"]


def _print_added(reply: dict[str, Any]) -> int:
    console = make_console()
    for result in reply["results"]:
        if not result["ok"]:
            console.print(Text(f"failed  {result['error']}", style="red"))
            continue
        functions = ", ".join(f"{f['function']} ({_mechanism(f)})" for f in result["functions"])
        line = f"added   {result['pattern']} [{_options(result)}]"
        console.print(line + (f" -> {functions}" if functions else f": {result.get('note', 'waiting')}"))
    return 0 if reply["ok"] else 1


def _print_removed(reply: dict[str, Any]) -> None:
    console = make_console()
    if not reply["removed"]:
        console.print("nothing to remove")
    for row in reply["removed"]:
        functions = ", ".join(row["functions"]) or "no function"
        console.print(f"removed {row['pattern']} ({row['source']}): {functions} restored")


def _print_list(reply: dict[str, Any]) -> None:
    console = make_console()
    process = reply["process"]
    console.print(
        f"process {process['pid']} · {' '.join(process['argv'])[:80]} · {process['environment']} · "
        f"mode {process['mode']} · escalation {process['escalation']}"
    )
    console.print()
    functions = [
        (
            row["function"],
            row["mechanism"],
            {"code trampoline": "code"}.get(row.get("installed") or "", row.get("installed") or "-"),
            "-" if row["calls"] is None else str(row["calls"]),
            ", ".join(row["targets"]),
        )
        for row in reply["functions"]
    ]
    _table(
        console,
        ("FUNCTION", "MECHANISM", "REACHED BY", "CALLS", "TARGETS"),
        functions,
        "no function is instrumented",
    )
    console.print()
    targets = [
        (
            row["pattern"],
            row["source"],
            _options(row),
            ", ".join(row["functions"]) or ("waiting for import" if row["waiting"] else "nothing matches"),
        )
        for row in reply["targets"]
    ]
    _table(console, ("TARGET", "SOURCE", "OPTIONS", "FUNCTIONS"), targets, "no targets")
    escalations = [
        (
            row["function"],
            f"{row['reason']} ({row['detail']})",
            time.strftime("%H:%M:%S", time.localtime(row["started"])),
            f"active: {row['seen']}/{row['calls']} calls"
            if row["state"] == "active"
            else (f"{row['state']} {row['outcome']}"),
        )
        for row in reply["escalations"]
    ]
    if escalations:
        console.print()
        _table(console, ("ESCALATION", "REASON", "STARTED", "STATE"), escalations, "")
    losses = reply.get("escalation_losses") or {}  # absent from the replies of older processes
    if any(losses.values()):
        console.print(
            f"escalations not run: {losses.get('dropped', 0):,} dropped (a budget, a full queue or exit), "
            f"{losses.get('failed', 0):,} failed"
        )


def _table(console: Any, header: tuple[str, ...], rows: Sequence[tuple[str, ...]], empty: str) -> None:
    """Plain aligned columns (not a rich table): piped output keeps every row on one line."""
    if not rows:
        console.print(empty)
        return
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    console.print(Text(_align(header, widths), style="bold"))
    for row in rows:
        console.print(_align(row, widths))


def _align(cells: tuple[str, ...], widths: list[int]) -> str:
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
