"""Process start and end under ``opentelemetry-instrument``: services, the session, its closing line."""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from otel_scope.bootstrap import Scope
from otel_scope.config import Settings
from otel_scope.control import start_services
from otel_scope.distro.reporting import say
from otel_scope.pipeline import suppressed
from otel_scope.sessions.session import ProcessSession, Session, export_at_exit

if TYPE_CHECKING:
    from otel_scope.engine import Engine


def closing_line(session: Session, settings: Settings) -> str:
    """Where to see the session: the local timeline command, and the UI link when exporting OTLP."""
    line = f"session {session.trace_id} · view: otel-scope history {session.trace_id}"
    exporters = os.environ.get("OTEL_TRACES_EXPORTER", "")
    if "otlp" in exporters:
        line += " · " + settings.ui_url.format(trace_id=session.trace_id)
    return line


def multiprocessing_helper() -> bool:
    """Whether this interpreter was started by ``multiprocessing`` (a spawn child, the resource
    tracker, a forkserver): it belongs to its parent's session, so it starts none of its own.
    """
    argv = getattr(sys, "orig_argv", sys.argv)
    return any(a.startswith("from multiprocessing.") for a in argv) or "--multiprocessing-fork" in argv


def no_targets_line(settings: Settings) -> str | None:
    """The line for a run that asks for a mode but names no target at all (None otherwise).

    ``auto`` (the default) stays quiet: otel-scope next to other instrumentations, with only the
    session's root span, is a normal way to run it.
    """
    if settings.mode in ("off", "auto") or settings.targets or settings.locals or settings.state:
        return None
    return (
        f"--scope-mode {settings.mode} but no targets are set, so otel-scope traces no function of "
        "this program: name some with --scope-targets (or --scope-locals, --scope-state), "
        "OTEL_SCOPE_TARGETS, or targets in [tool.otel-scope] of pyproject.toml, e.g. "
        "--scope-targets 'myapp.*'"
    )


def exit_lines(engine: Engine) -> list[str]:
    """What a run says at exit before its closing line: targets that never selected anything,
    and the functions skipped since start (by modules imported later)."""
    lines = engine.unmatched()
    skipped = engine.compile_time.skipped_summary()
    return [*lines, skipped] if skipped else lines


def start_process(scope: Scope, argv: Sequence[str]) -> ProcessSession | None:
    """Start this run's live control and its ``process`` session, if any."""
    settings, engine = scope.settings, scope.engine
    if multiprocessing_helper():
        export_at_exit(say)  # Pool.terminate() stops workers with SIGTERM: export first
        return None
    for line in (no_targets_line(settings), engine.compile_time.skipped_summary()):
        if line:
            say(line)
    with suppressed():  # the services' threads inherit this context: their work is never traced
        services = start_services(scope, say)
    if settings.session != "process":
        export_at_exit(say)
        atexit.register(_say_exit_lines, engine, os.getpid())
        return None
    name = os.path.basename(argv[0]) if argv else "python"

    def on_end(session: Session) -> None:
        for line in exit_lines(engine):
            say(line)
        if session.recording:
            say(closing_line(session, settings))
        scope.remove(*services)  # also on SIGTERM, where atexit handlers do not run

    return ProcessSession(name, list(argv), on_end=on_end, report=say, serializer=engine.serializer)


def _say_exit_lines(engine: Engine, pid: int) -> None:
    if os.getpid() == pid:  # a forked child exits too: its parent says these
        for line in exit_lines(engine):
            say(line)
