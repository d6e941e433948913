"""``otel-scope export``: write one trace to a file Jaeger, Tempo tooling or ``import`` can read."""

from __future__ import annotations

import argparse
import os
import sys

from otel_scope.cli._common import CliError, add_source_options, open_source
from otel_scope.timeline.writers import write_jaeger_json, write_otlp_json

FORMATS = {"otlp-json": write_otlp_json, "jaeger-json": write_jaeger_json}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write one trace as OTLP JSON or Jaeger JSON",
        description="Write one trace to a file. otlp-json is the OpenTelemetry format (hex IDs) that "
        "Jaeger's upload page and collectors read; jaeger-json is the legacy format the Jaeger UI opens "
        "offline (Search > JSON File). The file is written span by span, in bounded memory.",
    )
    parser.add_argument("trace_id", metavar="TRACE_ID", help="trace ID (a unique prefix works locally)")
    parser.add_argument("--format", choices=tuple(FORMATS), default="otlp-json", help="default: otlp-json")
    parser.add_argument("-o", "--output", metavar="FILE", help="write here instead of standard output")
    add_source_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    write = FORMATS[args.format]
    with open_source(args).open_trace(args.trace_id) as reader:
        if not args.output or args.output == "-":
            write(reader, sys.stdout)
            sys.stdout.flush()
            return 0
        try:
            # A trace holds argument values: a new file is private (0600) like the store. An
            # existing file keeps the mode its owner gave it.
            fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with open(fd, "w", encoding="utf-8") as fh:
                count = write(reader, fh)
        except OSError as exc:
            raise CliError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    print(f"wrote trace {reader.trace_id} ({count} spans, {args.format}) to {args.output}", file=sys.stderr)
    return 0
