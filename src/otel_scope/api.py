"""The Python API: ``otel_scope.trace``, ``otel_scope.session`` and the process start.

There is one :class:`~otel_scope.bootstrap.Scope` per process, built by
:func:`~otel_scope.bootstrap.bootstrap`. Under ``opentelemetry-instrument`` the distro starts it
from the settings (:func:`start`); in a plain program the first ``trace()`` call starts it from
``OTEL_SCOPE_*`` / ``pyproject.toml`` settings, with the same features.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal

from opentelemetry import trace as otel_trace

from otel_scope import _forksafe
from otel_scope.bootstrap import Scope, bootstrap
from otel_scope.config import ConfigError, Settings, load_settings
from otel_scope.config.patterns import TargetPattern, parse_pattern
from otel_scope.engine import Engine, Handle, script
from otel_scope.sessions import session as _session_module
from otel_scope.sessions import state as session_state
from otel_scope.targets.planner import Request, requests_from_settings
from otel_scope.vocabulary import LEVELS, TARGET_MODES

_log = logging.getLogger("otel_scope")
_lock = _forksafe.lock()
_scope: Scope | None = None


def get_scope() -> Scope:
    """The process's scope, started from the settings on first use."""
    global _scope
    if _scope is None:
        with _lock:
            if _scope is None:
                try:
                    settings = load_settings()
                except ConfigError as exc:
                    _log.warning("otel-scope: %s; using defaults for the Python API", exc)
                    settings = Settings()
                _scope = bootstrap(settings)
    return _scope


def get_engine() -> Engine:
    """The process's engine (the live controls look it up per request)."""
    return get_scope().engine


def start(settings: Settings, report: Callable[[str], None] | None = None) -> Scope:
    """Start otel-scope for this process from ``settings`` (the distro calls this once).

    Replaces any scope started before, applies every target of the settings and, for targets
    in the script being run, watches for its ``__main__`` functions.
    """
    global _scope
    with _lock:
        if _scope is not None:
            _scope.close()
        session_state.kind = settings.session
        scope = _scope = bootstrap(settings, report)
    engine = scope.engine
    requests = requests_from_settings(settings)
    for request in requests:
        handle = engine.add(request)
        if request.pattern.module != script.MAIN:  # the script has not run yet: nothing to say
            _report(handle)
    names = script.script_module_names()
    if len(names) > 1:  # a script file or ``-m`` module (not ``-c``, not a multiprocessing child)
        aliased = script.script_requests(requests, names)
        for request in aliased:
            engine.add(request)
        watched = [r for r in requests if r.pattern.module == script.MAIN] + aliased
        if watched:
            script.ScriptWatcher(engine, watched).start()
    return scope


def _capture_request(capture_locals: str | Sequence[str] | None) -> frozenset[str] | Literal[False] | None:
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
    :class:`~otel_scope.config.patterns.PatternError` for a malformed pattern) naming what is
    accepted.
    """
    if mode not in TARGET_MODES:
        raise ValueError(f"mode={mode!r} is not valid; accepted: {', '.join(TARGET_MODES)}")
    if level is not None and level not in LEVELS:
        raise ValueError(f"level={level!r} is not valid; accepted: {', '.join(LEVELS)}")
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
    _warn_without_sdk()
    options: dict[str, Any] = {"mode": mode, "capture_locals": capture_locals, "lines": lines, "level": level}
    engine = get_engine()
    mark = engine.compile_time.skipped_mark()
    if callable(target) and not isinstance(target, str):
        request = make_request(TargetPattern(text="<function>", module=""), **options)
        handle = engine.add_function(target, request)
    else:
        handle = _report(engine.add(make_request(target, **options)))
    skipped = engine.compile_time.skipped_summary(mark)  # what this call could not capture
    if skipped:
        _log.warning("otel-scope: %s", skipped)
    return handle


_said_no_sdk = False


def _warn_without_sdk() -> None:
    """Say once that nothing will record when no OpenTelemetry SDK was set up in this process.

    otel-scope instruments either way (a provider set later starts recording at once), but under
    plain ``python`` the API's default provider records nothing and trace IDs are all zeros.
    """
    global _said_no_sdk
    if _said_no_sdk or not isinstance(otel_trace.get_tracer_provider(), otel_trace.ProxyTracerProvider):
        return
    _said_no_sdk = True
    _log.warning(
        "otel-scope: no OpenTelemetry SDK is set up in this process, so nothing records: run under "
        "opentelemetry-instrument, or call opentelemetry.trace.set_tracer_provider(TracerProvider(...))"
    )


def _report(handle: Handle) -> Handle:
    """Tell the user, in one line, about a target that selects nothing in its loaded module."""
    problem = handle.problem
    if problem:
        _log.warning("otel-scope: %s selects nothing: %s", handle.target, problem)
    return handle


def session(name: str) -> Any:
    """A context manager: everything inside lands in one trace; its value has ``.trace_id``."""
    get_engine()
    return _session_module.session(name)


def shutdown() -> None:
    """Remove every target and feature (tests and embedding applications)."""
    global _scope
    with _lock:
        if _scope is not None:
            _scope.close()
            _scope = None
