"""``otel-scope import``: read a trace file, keep it in the local store, and show its timeline.

Storing the imported spans lets ``history``, ``sessions`` and ``export`` work on a trace that came
from a colleague's Jaeger download or an OTLP file exporter, exactly as on a local one. OTLP files
are read span by span and written to the store in batches; the timeline is then read back from
the store, so neither step holds the trace in memory.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict

from otel_scope.cli._common import CliError, add_store_option, paged_output, store_path, write_json_list
from otel_scope.store import SpanStore
from otel_scope.store.records import SpanRecord
from otel_scope.timeline import FileSource, SourceError
from otel_scope.timeline.file_stream import is_streamable, otlp_spans
from otel_scope.timeline.reader import TraceReader
from otel_scope.timeline.render import (
    Request,
    TimelineEntry,
    View,
    history_entries,
    trace_stats,
    write_history,
)

_BATCH = 5_000


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    parser.add_argument("--no-pager", action="store_true", help="never page the timeline")
    add_store_option(parser)
    parser.set_defaults(run=run)


def _spans(path: str) -> Iterator[SpanRecord]:
    if is_streamable(path):
        yield from otlp_spans(path)
        return
    for trace in FileSource(path).traces:  # Jaeger JSON and lists of documents: read whole
        yield from trace.spans


def _select(path: str, prefix: str | None) -> Iterator[SpanRecord]:
    text = (prefix or "").strip().lower()
    for span in _spans(path):
        if span.trace_id.startswith(text):
            yield span


def _store(store: SpanStore, spans: Iterable[SpanRecord]) -> tuple[int, dict[str, int]]:
    """Write ``spans`` in batches; returns how many were new, and each trace's first start."""
    added, traces = 0, dict[str, int]()
    iterator = iter(spans)
    while batch := list(itertools.islice(iterator, _BATCH)):
        added += store.add_records(batch)
        for span in batch:
            traces[span.trace_id] = min(traces.get(span.trace_id, span.start_ns), span.start_ns)
    return added, traces


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="otel-scope-import-") as scratch:
        path = os.path.join(scratch, "trace.sqlite3") if args.no_store else store_path(args)
        store = SpanStore(path)
        try:
            added, traces = _store(store, _select(args.file, args.trace))
        finally:
            store.close()
        if not traces:
            if args.trace:
                raise CliError(f"no trace {args.trace} in {args.file}")
            raise SourceError(f"{args.file} holds no spans")
        if args.trace and len(traces) > 1:
            raise CliError(
                f"trace ID prefix {args.trace!r} matches {len(traces)} traces in {args.file}; "
                "type more digits"
            )
        if not args.no_store:
            print(f"imported {added} new spans of {len(traces)} trace(s) into {path}", file=sys.stderr)
        order = sorted(traces, key=traces.__getitem__)
        # JSON is for programs: every call, every value, no folding.
        request = Request(function=args.function, view=View(fold=not args.json, dedupe=not args.json))
        if args.json:
            write_json_list(asdict(e) for trace_id in order for e in _entries(path, trace_id, request))
            return 0
        with paged_output(args.no_pager) as out:
            for number, trace_id in enumerate(order):
                if number:
                    out.line()
                with TraceReader(path, trace_id) as reader:
                    write_history(reader, request, out)
    return 0


def _entries(path: str, trace_id: str, request: Request) -> Iterator[TimelineEntry]:
    with TraceReader(path, trace_id) as reader:
        yield from history_entries(reader, request, trace_stats(reader).start_ns)
