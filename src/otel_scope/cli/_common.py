"""What the subcommands share: the store and backend options, the console, JSON output, errors."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console

from otel_scope.config import ConfigError, load_settings
from otel_scope.timeline import JaegerSource, LocalStoreSource, TempoSource, TraceSource
from otel_scope.timeline.render import Output

BACKENDS: dict[str, tuple[str, Callable[[str], TraceSource]]] = {  # name: (default URL, source)
    "jaeger": ("http://localhost:16686", JaegerSource),
    "tempo": ("http://localhost:3200", TempoSource),
}


class CliError(Exception):
    """A problem the user can fix; ``main`` prints its one-line message and exits with 1."""


def add_store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        metavar="PATH",
        help="local store file (default: the store_path setting, OTEL_SCOPE_STORE_PATH, "
        "else ~/.local/state/otel-scope/traces.sqlite3)",
    )


def add_source_options(parser: argparse.ArgumentParser) -> None:
    """``--from jaeger|tempo [URL]`` and ``--store PATH``: where to read the trace."""
    parser.add_argument(
        "--from",
        dest="backend",
        nargs="+",
        metavar=("BACKEND", "URL"),
        help="read from a backend instead of the local store: 'jaeger [URL]' (default URL "
        "http://localhost:16686) or 'tempo [URL]' (default http://localhost:3200)",
    )
    add_store_option(parser)


def store_path(args: argparse.Namespace) -> str:
    """``--store``, else the configured store path (a configuration error is the user's to fix)."""
    if args.store:
        return str(args.store)
    try:
        return load_settings().store_path
    except ConfigError as exc:
        raise CliError(f"{exc} (or pass --store PATH)") from None


def open_source(args: argparse.Namespace) -> TraceSource:
    if not args.backend:
        return LocalStoreSource(store_path(args))
    name, *rest = args.backend
    if name not in BACKENDS or len(rest) > 1:
        raise CliError(f"--from takes 'jaeger [URL]' or 'tempo [URL]', not {' '.join(args.backend)!r}")
    default_url, source = BACKENDS[name]
    url = rest[0] if rest else default_url
    if not url.startswith(("http://", "https://")):
        raise CliError(f"--from {name} needs an http:// or https:// URL, not {url!r}")
    return source(url)


def pick_trace_id(source: TraceSource, trace_id: str | None) -> str:
    """``trace_id``, or the source's most recent trace when none was given (``--last``)."""
    if trace_id:
        return trace_id
    last = source.last_trace_id()
    if last is not None:
        return last
    if isinstance(source, LocalStoreSource):
        raise CliError(
            f"no traces stored yet at {source.path}; run your app under "
            "`opentelemetry-instrument --traces_exporter otel_scope python app.py` first"
        )
    raise CliError(f"no recent traces at {getattr(source, 'base_url', source)}; give a TRACE_ID")


def make_console() -> Console:
    """A console for stdout that never wraps lines (so piped output stays one entry per line) and
    never reads markup or highlights values out of captured user data; rich drops colour by
    itself when stdout is not a terminal."""
    return Console(highlight=False, emoji=False, markup=False, soft_wrap=True)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()  # a closed pipe surfaces here, inside main(), not at interpreter exit


def write_json_list(items: Iterable[Any]) -> None:
    """A JSON list written item by item, so a million entries never sit in memory at once."""
    out = sys.stdout
    out.write("[")
    for number, item in enumerate(items):
        out.write(",\n" if number else "\n")
        out.write(json.dumps(item, indent=2, ensure_ascii=False, default=str))
    out.write("\n]\n")
    out.flush()


def _pager_command() -> list[str] | None:
    """``$PAGER`` (empty or ``cat`` means none), else ``less`` when installed."""
    command = os.environ.get("PAGER")
    if command is None:
        return ["less"] if shutil.which("less") else None
    words = shlex.split(command)
    return words if words and words != ["cat"] else None


@contextmanager
def paged_output(no_pager: bool) -> Iterator[Output]:
    """Where a timeline goes: stdout, or a pager when stdout is a terminal, as ``git log`` does.

    ``less`` gets ``LESS=FRX`` unless the user set ``LESS``: it exits at once when the output fits
    on one screen, keeps colours, and leaves the text on the screen. Quitting the pager early
    (``q``) ends the command quietly. Piped or redirected output is never paged.
    """
    console = make_console()
    colour = console.is_terminal and console.color_system is not None
    command = None if no_pager or not console.is_terminal else _pager_command()
    if command is None:
        yield Output(sys.stdout, colour)
        sys.stdout.flush()  # a closed pipe surfaces here, inside main(), not at interpreter exit
        return
    env = dict(os.environ)
    env.setdefault("LESS", "FRX")
    try:
        pager = subprocess.Popen(command, stdin=subprocess.PIPE, env=env, text=True, encoding="utf-8")
    except OSError as exc:
        raise CliError(
            f"cannot start the pager {' '.join(command)!r} ({exc.strerror}); set PAGER or use --no-pager"
        ) from None
    assert pager.stdin is not None
    try:
        yield Output(pager.stdin, colour)
        pager.stdin.close()
    except BrokenPipeError:
        pass  # the user quit the pager before the end: that is not an error
    finally:
        try:
            pager.stdin.close()
        except BrokenPipeError:
            pass
        pager.wait()
