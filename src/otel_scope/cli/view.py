"""``otel-scope view``: one trace in the browser (served on 127.0.0.1), or as one HTML file."""

from __future__ import annotations

import argparse
import os
import sys
import webbrowser

from otel_scope.cli._common import BACKENDS, CliError, add_store_option, open_source, pick_trace_id
from otel_scope.timeline import FileSource, TraceSource
from otel_scope.view import ViewData, ViewServer, standalone_page


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "view",
        help="one trace in the browser: lanes, messages, source with values, time travel",
        description="Serve one trace on 127.0.0.1 and open it in the browser: a lane per component, "
        "calls as bars, messages as arrows; open a call to see its source annotated with the values "
        "captured on each line and step through them. With --html FILE, write the same page as one "
        "self-contained file instead. Without TRACE_ID, shows the most recent trace.",
    )
    parser.add_argument(
        "trace_id", nargs="?", metavar="TRACE_ID", help="trace ID (a unique prefix works locally)"
    )
    parser.add_argument("--last", action="store_true", help="the most recent trace (the default)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--no-browser", action="store_true", help="print the URL, do not open a browser")
    parser.add_argument(
        "--html", metavar="FILE", help="write one self-contained HTML file (no server, works offline)"
    )
    # As history's --from, and also a trace FILE: a page is often made from an attachment.
    parser.add_argument(
        "--from",
        dest="backend",
        nargs="+",
        metavar=("BACKEND|FILE", "URL"),
        help="read from a backend instead of the local store: 'jaeger [URL]' (default URL "
        "http://localhost:16686) or 'tempo [URL]' (default http://localhost:3200); or a trace "
        "FILE (OTLP JSON/JSONL or Jaeger JSON)",
    )
    add_store_option(parser)
    parser.set_defaults(run=run)


def _source(args: argparse.Namespace) -> TraceSource:
    if args.backend and len(args.backend) == 1 and args.backend[0] not in BACKENDS:
        if not os.path.exists(args.backend[0]):
            raise CliError(
                f"--from takes 'jaeger [URL]', 'tempo [URL]' or a trace file, not {args.backend[0]!r} "
                "(no such file)"
            )
        return FileSource(args.backend[0])
    return open_source(args)


def run(args: argparse.Namespace) -> int:
    if args.trace_id and args.last:
        raise CliError("give TRACE_ID or --last, not both")
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port takes 0-65535 (0: a free port), not {args.port}")
    source = _source(args)
    data = ViewData(source.get_trace(pick_trace_id(source, args.trace_id)))
    if args.html:
        page = standalone_page(data)
        try:
            with open(args.html, "w", encoding="utf-8") as fh:
                fh.write(page)
        except OSError as exc:
            raise CliError(f"cannot write {args.html}: {exc.strerror or exc}") from None
        spans = len(data.trace.spans)
        print(f"wrote {args.html}: trace {data.trace.trace_id} ({spans} spans); open it in any browser")
        return 0
    try:
        server = ViewServer(data, args.port)
    except OSError as exc:
        raise CliError(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}") from None
    with server:
        print(f"otel-scope view: trace {data.trace.trace_id} at {server.url}  (Ctrl-C stops)", flush=True)
        if not args.no_browser and not webbrowser.open(server.url):
            print("otel-scope view: no browser found here; open the URL above", file=sys.stderr, flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0
