"""``otel-scope import``: read a trace file, keep it in the local store, and show its timeline.

Storing the imported spans lets ``history``, ``sessions`` and ``export`` work on a trace that came
from a colleague's Jaeger download or an OTLP file exporter, exactly as on a local one.
"""

from __future__ import annotations

import argparse
import sys

from otel_scope.cli._common import add_store_option, make_console, print_json, store_path
from otel_scope.store import SpanStore
from otel_scope.timeline import FileSource, build_timeline, entries_to_json, render_history


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import",
        help="read an OTLP JSON/JSONL or Jaeger JSON file and show its timeline",
        description="Read a trace file (OTLP JSON, OTLP JSONL as the file exporter writes it, or Jaeger "
        "JSON as its UI downloads it), add its spans to the local store and show each trace's timeline.",
    )
    parser.add_argument("file", metavar="FILE")
    parser.add_argument(
        "--trace", metavar="TRACE_ID", help="only this trace of the file (ID or unique prefix)"
    )
    parser.add_argument("--function", metavar="PATTERN", help="only calls whose code.function.name matches")
    parser.add_argument("--json", action="store_true", help="print the timeline entries as JSON")
    parser.add_argument(
        "--no-store", action="store_true", help="only show the file; do not add it to the store"
    )
    add_store_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    source = FileSource(args.file)
    traces = [source.get_trace(args.trace)] if args.trace else source.traces
    if not args.no_store:
        path = store_path(args)
        store = SpanStore(path)
        added = store.add_records([span for trace in traces for span in trace.spans])
        store.close()
        print(f"imported {added} new spans of {len(traces)} trace(s) into {path}", file=sys.stderr)
    if args.json:
        print_json([e for trace in traces for e in entries_to_json(build_timeline(trace, args.function))])
        return 0
    console = make_console()
    for number, trace in enumerate(traces):
        if number:
            console.print()
        render_history(trace, console, args.function)
    return 0
