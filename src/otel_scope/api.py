"""The Python API: ``otel_scope.trace``, ``otel_scope.session`` and the process bootstrap.

There is one :class:`~otel_scope.engine.Engine` per process. Under ``opentelemetry-instrument``
the distro starts it from the settings; in a plain program the first ``trace()`` call starts it
from ``OTEL_SCOPE_*`` / ``pyproject.toml`` settings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from otel_scope import _forksafe
from otel_scope.config import ConfigError, Settings, load_settings
from otel_scope.engine import CompileTimeAdapter, Engine, Handle
from otel_scope.runtime import messages, propagation
from otel_scope.sessions import session as _session_module
from otel_scope.sessions import state as session_state
from otel_scope.targets.patterns import TargetPattern, parse_pattern
from otel_scope.targets.planner import Request, production_limits, requests_from_settings

_log = logging.getLogger("otel_scope")
_lock = _forksafe.lock()
_engine: Engine | None = None

MODES = ("auto", "runtime", "compile_time", "hybrid")


def get_engine() -> Engine:
    """The process's engine, created from the settings on first use."""
    global _engine
    if _engine is None:
        with _lock:
            if _engine is None:
                try:
                    settings = load_settings()
                except ConfigError as exc:
                    _log.warning("otel-scope: %s; using defaults for the Python API", exc)
                    settings = Settings()
                _engine = _make_engine(settings)
    return _engine


def _make_engine(settings: Settings) -> Engine:
    engine = Engine(settings)
    engine.compile_time = CompileTimeAdapter(
        engine, production_limits(settings) if settings.production else settings
    )
    return engine


def start(settings: Settings, argv: Sequence[str] | None = None) -> Engine:
    """Start otel-scope for this process from ``settings`` (the distro calls this once).

    Applies every target of the settings, installs the import hook for modules imported later
    and, for ``process`` sessions, starts the session root span.
    """
    global _engine
    with _lock:
        if _engine is not None:
            _engine.remove_all()
        session_state.kind = settings.session
        engine = _engine = _make_engine(settings)
    for request in requests_from_settings(settings):
        engine.add(request)
    engine.compile_time.install_import_hook()
    propagation.install()
    if settings.messages:
        messages.install(engine.serializer)
    return engine


def _capture_request(capture_locals: str | Sequence[str] | None) -> frozenset[str] | bool | None:
    if capture_locals is None:
        return False
    if capture_locals == "*":
        return None
    if isinstance(capture_locals, str):
        capture_locals = [n.strip() for n in capture_locals.split(",")]
    return frozenset(capture_locals)


def make_request(
    target: str | TargetPattern,
    *,
    mode: str = "auto",
    capture_locals: str | Sequence[str] | None = None,
    lines: Sequence[int] | None = None,
    level: str | None = None,
    source: str = "api",
) -> Request:
    """Validate :func:`trace`'s options into a :class:`Request` for ``target``.

    Shared with the live controls (``otel-scope targets add``, OpAMP) so that a request means the
    same, and is refused with the same words, whichever way it arrives. Raises ``ValueError`` (a
    :class:`~otel_scope.targets.patterns.PatternError` for a malformed pattern) naming what is
    accepted.
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not valid; accepted: {', '.join(MODES)}")
    if level is not None and level not in ("boundaries", "locals", "lines", "expressions"):
        raise ValueError(f"level={level!r} is not valid; accepted: boundaries, locals, lines, expressions")
    line_numbers = tuple(sorted({int(n) for n in lines or ()}))
    if line_numbers and line_numbers[0] < 1:
        raise ValueError(f"lines={list(line_numbers)} is not valid; accepted: line numbers from 1")
    pattern = target if isinstance(target, TargetPattern) else parse_pattern(target)
    return Request(
        pattern,
        mode=mode,
        capture_locals=_capture_request(capture_locals),
        lines=line_numbers or pattern.lines,
        level=level,
        source=source,
    )


def trace(
    target: str | Callable[..., Any],
    *,
    mode: str = "auto",
    capture_locals: str | Sequence[str] | None = None,
    lines: Sequence[int] | None = None,
    level: str | None = None,
) -> Handle:
    """Trace ``target`` (a pattern such as ``"shop.orders:Order.total"``, or a function).

    ``mode`` is ``auto`` (the planner decides), ``runtime``, ``compile_time`` or ``hybrid``;
    ``capture_locals`` is ``"*"`` or names of locals to capture at compile time; ``lines`` get line
    events; ``level`` is ``boundaries``, ``locals``, ``lines`` or ``expressions``. A pattern for a
    module not imported yet is applied when it is imported. Returns a :class:`Handle`;
    ``handle.remove()`` undoes exactly this call. Raises ``ValueError`` for a malformed pattern
    or option, naming what is accepted.
    """
    options: dict[str, Any] = {"mode": mode, "capture_locals": capture_locals, "lines": lines, "level": level}
    if callable(target) and not isinstance(target, str):
        request = make_request(TargetPattern(text="<function>", module=""), **options)
        return get_engine().add_function(target, request)
    request = make_request(target, **options)
    return get_engine().add(request)


def session(name: str) -> Any:
    """A context manager: everything inside lands in one trace; its value has ``.trace_id``."""
    get_engine()
    return _session_module.session(name)


def shutdown() -> None:
    """Remove every target and the import hook (tests and embedding applications)."""
    global _engine
    with _lock:
        if _engine is not None:
            _engine.remove_all()
            _engine.compile_time.uninstall_import_hook()
            _engine = None
        messages.uninstall()
        propagation.uninstall()
