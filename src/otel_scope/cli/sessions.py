"""``otel-scope sessions``: the recent traces in the local store, newest activity first."""

from __future__ import annotations

import argparse
import dataclasses

from rich.text import Text

from otel_scope.cli._common import add_store_option, make_console, print_json, store_path
from otel_scope.timeline import LocalStoreSource
from otel_scope.timeline.render import format_duration, format_time

_COLUMNS = ("TRACE ID", "STARTED", "DURATION", "SPANS", "ERRORS", "DEPTHS", "SESSION", "SERVICE", "ROOT")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sessions",
        help="recent sessions in the local store",
        description="List the traces in the local store, the most recently active first.",
    )
    parser.add_argument("--limit", type=int, default=20, metavar="N", help="how many (default 20)")
    parser.add_argument("--json", action="store_true", help="print the sessions as JSON")
    add_store_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    source = LocalStoreSource(store_path(args))
    sessions = source.store.sessions(args.limit)
    if args.json:
        print_json([dataclasses.asdict(s) for s in sessions])
        return 0
    console = make_console()
    if not sessions:
        console.print(f"no sessions in {source.path} yet")
        return 0
    rows = [
        (
            s.trace_id,
            format_time(s.start_ns)[:19],
            format_duration(s.duration_ns),
            str(s.span_count),
            str(s.error_count),
            "+".join(d for d, on in (("runtime", s.has_runtime), ("compile_time", s.has_compile_time)) if on)
            or "otel",
            s.session_name or "-",
            s.service_name or "-",
            s.root_name,
        )
        for s in sessions
    ]
    # Plain aligned columns, not a rich table: piped output keeps every row on one line.
    widths = [max(len(r[i]) for r in [_COLUMNS, *rows]) for i in range(len(_COLUMNS))]
    console.print(Text(_align(_COLUMNS, widths), style="bold"))
    for s, row in zip(sessions, rows, strict=True):
        console.print(Text(_align(row, widths), style="red" if s.error_count else ""))
    size_mb = source.store.size_bytes() / 1024 / 1024
    console.print(Text(f"{source.path} ({size_mb:.1f} MB)", style="dim"))
    return 0


def _align(cells: tuple[str, ...], widths: list[int]) -> str:
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
