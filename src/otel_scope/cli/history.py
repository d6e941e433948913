"""``otel-scope history``: the unified timeline of one trace (the seed's ``IExHelpers.history``)."""

from __future__ import annotations

import argparse

from otel_scope.cli._common import (
    CliError,
    add_source_options,
    make_console,
    open_source,
    pick_trace_id,
    print_json,
)
from otel_scope.timeline import build_timeline, entries_to_json, follow, render_entries, render_history


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "history",
        help="the unified timeline of one trace",
        description="Show one trace as a timeline: calls ([RUNTIME]/[COMPILE]/[OTEL]) with their locals, "
        "lines, state changes and messages in time order. Without TRACE_ID, shows the most recent trace.",
    )
    parser.add_argument(
        "trace_id", nargs="?", metavar="TRACE_ID", help="trace ID (a unique prefix works locally)"
    )
    parser.add_argument("--last", action="store_true", help="the most recent trace (the default)")
    only = parser.add_mutually_exclusive_group()
    only.add_argument(
        "--function",
        metavar="PATTERN",
        help="only calls whose code.function.name matches (substring, or glob such as 'check_*')",
    )
    only.add_argument(
        "--follow",
        metavar="ID",
        help="follow a message (otel_scope.message.id) or a span ID: the sender, the message, "
        "and the receivers with their events",
    )
    parser.add_argument("--json", action="store_true", help="print the timeline entries as JSON")
    add_source_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.trace_id and args.last:
        raise CliError("give TRACE_ID or --last, not both")
    source = open_source(args)
    trace = source.get_trace(pick_trace_id(source, args.trace_id))
    if args.json:
        entries = follow(trace, args.follow) if args.follow else build_timeline(trace, args.function)
        print_json(entries_to_json(entries))
    elif args.follow:
        render_entries(trace, follow(trace, args.follow), make_console())
    else:
        render_history(trace, make_console(), args.function)
    return 0
