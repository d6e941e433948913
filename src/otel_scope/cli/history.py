"""``otel-scope history``: the unified timeline of one trace (the seed's ``IExHelpers.history``)."""

from __future__ import annotations

import argparse
import itertools
import re
from collections.abc import Iterable
from dataclasses import asdict

from otel_scope.cli._common import (
    CliError,
    add_source_options,
    open_source,
    paged_output,
    pick_trace_id,
    write_json_list,
)
from otel_scope.timeline import QueryError, compile_where
from otel_scope.timeline.render import (
    Request,
    TimelineEntry,
    View,
    follow_entries,
    history_entries,
    trace_stats,
    write_entries,
    write_history,
)

ORDER_HELP = (
    "Order: each call's lines (its locals, lines, state changes, messages and nested calls, by time) "
    "sit between its CALL and its RETURN; sibling calls follow each other by start time, so lines of "
    "concurrent threads are grouped per call, not interleaved by clock. Offsets are from the trace "
    "start (microseconds past 10 s)."
)
_OFFSET = re.compile(r"^\+?(\d+(?:\.\d*)?|\.\d+)\s*(ns|us|µs|ms|s|m)?$")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000}


def offset(text: str) -> int:
    """``--since``/``--until``: an offset from the trace start such as ``1.5s``, ``250ms``, ``+13.1s``."""
    match = _OFFSET.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an offset; use a number with ns, us, ms, s or m "
            "(seconds if none), e.g. 1.5s or 250ms"
        )
    return int(float(match.group(1)) * _UNITS[match.group(2) or "s"])


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 0 or more")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "history",
        help="the unified timeline of one trace",
        description="Show one trace as a timeline: calls ([RUNTIME]/[COMPILE]/[OTEL]) with their locals, "
        "lines, state changes and messages. Without TRACE_ID, shows the most recent trace. Traces of more "
        "than 1,000 spans, and traces call sampling thinned, start with a summary (time per function, calls "
        "sampled out, slowest calls, exceptions). " + ORDER_HELP,
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
        help="follow a message (otel_scope.message.id, as printed: '#msg-1' or 'msg-1') or a span ID: "
        "the sender, the message, and the receivers with their events",
    )
    only.add_argument(
        "--where",
        metavar="CONDITION",
        help="list the calls and events whose captured values match, with their call path: "
        "e.g. 'remaining < 0', \"item == 'itemA' and qty > 1\" (< <= > >= == !=, and/or/not, "
        "parentheses; names are arguments, locals, 'return', state attributes)",
    )
    parser.add_argument("--depth", type=_count, metavar="N", help="hide lines nested more than N calls deep")
    parser.add_argument("--since", type=offset, metavar="OFFSET", help="only from this offset (e.g. 1.5s)")
    parser.add_argument("--until", type=offset, metavar="OFFSET", help="only up to this offset (e.g. 2s)")
    parser.add_argument("--limit", type=_count, metavar="N", help="stop after N timeline lines")
    parser.add_argument(
        "--full",
        action="store_true",
        help="show everything: no folding of repeated calls, every long value in full (not @N), "
        "the self/cls of every call",
    )
    summary = parser.add_mutually_exclusive_group()
    summary.add_argument("--summary", dest="summary", action="store_true", default=None,
                         help="start with the summary even for a small trace")  # fmt: skip
    summary.add_argument("--no-summary", dest="summary", action="store_false",
                         help="no summary, even for a big trace")  # fmt: skip
    parser.add_argument(
        "--no-pager",
        action="store_true",
        help="never page (by default a terminal gets $PAGER, else less, "
        "when the output is longer than the screen)",
    )
    parser.add_argument("--json", action="store_true", help="print the timeline entries as JSON")
    add_source_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.trace_id and args.last:
        raise CliError("give TRACE_ID or --last, not both")
    try:
        where = compile_where(args.where) if args.where is not None else None
    except QueryError as exc:
        raise CliError(f"--where: {exc}") from None
    view = View(depth=args.depth, since_ns=args.since, until_ns=args.until, fold=not (args.full or args.json),
                full=args.full, dedupe=not args.json)  # fmt: skip
    request = Request(function=args.function, where=where, view=view, limit=args.limit, summary=args.summary)
    source = open_source(args)
    trace_id = pick_trace_id(source, args.trace_id)
    with source.open_trace(trace_id) as reader:
        if args.follow:
            # Only the followed chain and its receivers' subtrees are read, never the whole trace.
            entries: Iterable[TimelineEntry] = follow_entries(reader, args.follow)
            if args.json:
                write_json_list(asdict(e) for e in entries)
            else:
                with paged_output(args.no_pager) as out:
                    write_entries(trace_stats(reader), entries, out)
            return 0
        if args.json:
            entries = history_entries(reader, request, trace_stats(reader).start_ns)
            write_json_list(asdict(e) for e in itertools.islice(entries, args.limit))
            return 0
        with paged_output(args.no_pager) as out:
            write_history(reader, request, out)
    return 0
