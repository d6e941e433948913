"""What a control request does: ``list``, ``add`` and ``remove`` against the process's engine.

Transport-free: the Unix-socket server hands each decoded request here and sends back the reply,
so the rules live in one place and are tested without sockets too. A request is a JSON object:

``{"op": "list"}``
    every target (pattern, source, options, the functions it instruments), every instrumented
    function (mechanism, calls seen) and the escalations.
``{"op": "add", "patterns": [...], "locals": "*" | [names] | null, "lines": [15, 22] | "15+22",
"level": "...", "mode": "..."}``
    like ``otel_scope.trace(pattern, capture_locals=..., lines=..., level=..., mode=...)`` for each
    pattern. The whole request is validated first: one malformed pattern or option rejects it
    and changes nothing. Then each pattern is applied on its own; one that cannot be applied
    (its module is imported but nothing in it matches, or instrumenting failed) is undone and
    its result names why. A pattern whose module is not imported yet is kept and applied when it
    is, as everywhere in otel-scope.
``{"op": "remove", "patterns": [...]}`` or ``{"op": "remove", "all": true}``
    removes the targets with exactly these patterns (from any source but escalation, which ends
    by itself), or everything, which restores every original function object and code object.

Every reply has ``"ok"`` and, when false, ``"error"``: one line saying what was wrong and what is
accepted. A request's ``"id"``, if any, is echoed. Nothing here raises into the caller.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from otel_scope import api
from otel_scope._version import __version__
from otel_scope.config import Settings
from otel_scope.config.patterns import parse_pattern
from otel_scope.engine import Engine, Entry
from otel_scope.targets.planner import Request, decide
from otel_scope.vocabulary import LEVELS, TARGET_MODES

if TYPE_CHECKING:
    from otel_scope.runtime.escalation import Escalator

PROTOCOL_VERSION = 1
OPS = ("list", "add", "remove")
_KEYS = {
    "list": {"op", "id"},
    "add": {"op", "id", "patterns", "locals", "lines", "level", "mode"},
    "remove": {"op", "id", "patterns", "all"},
}


class RequestError(ValueError):
    """A request that is not well-formed; its message is the reply's ``error``."""


def describe_request(request: Request) -> dict[str, Any]:
    """A request's options as plain JSON values (``locals``: ``"*"``, a list of names, or null)."""
    capture = request.capture_locals
    return {
        "mode": request.mode,
        "runtime": request.runtime,
        "locals": None if capture is False else "*" if capture is None else sorted(capture),
        "lines": list(request.lines),
        "level": request.level,
        "state": request.state,
    }


class Controller:
    """Carries out control requests for one process."""

    def __init__(
        self,
        settings: Settings,
        escalator: Escalator | None = None,
        escalation_status: str = "",
        engine: Callable[[], Engine] = api.get_engine,
    ) -> None:
        self._settings = settings
        self._escalator = escalator
        self._escalation_status = escalation_status
        self._engine = engine  # looked up per request: api.start() may have replaced it

    def handle(self, message: object) -> dict[str, Any]:
        """The reply to one decoded request (a JSON object); never raises."""
        request_id = message.get("id") if isinstance(message, dict) else None
        try:
            reply = self._dispatch(message)
        except RequestError as exc:
            reply = {"ok": False, "error": str(exc)}
        except Exception as exc:  # a bug of ours must not reach the program, nor hide from the user
            reply = {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
        if request_id is not None:
            reply["id"] = request_id
        return reply

    def _dispatch(self, message: object) -> dict[str, Any]:
        if not isinstance(message, dict):
            raise RequestError(f"a request is a JSON object with an 'op' ({', '.join(OPS)})")
        op = message.get("op")
        if type(op) is not str or op not in OPS:
            raise RequestError(f"unknown op {_shown(op)}; accepted: {', '.join(OPS)}")
        unknown = sorted(set(message) - _KEYS[op])
        if unknown:
            raise RequestError(
                f"unknown key(s) {_cut(', '.join(map(str, unknown)))} for {op}; "
                f"accepted: {', '.join(sorted(_KEYS[op]))}"
            )
        if op == "list":
            return self.list_targets()
        if op == "add":
            return self.add_targets(message)
        return self.remove_targets(message)

    # -- list ----------------------------------------------------------------------------------
    def list_targets(self) -> dict[str, Any]:
        engine = self._engine()
        return {
            "ok": True,
            "protocol": PROTOCOL_VERSION,
            "process": {
                "pid": os.getpid(),
                "argv": sys.argv,
                "python": sys.version.split()[0],
                "otel_scope": __version__,
                "environment": self._settings.environment,
                "mode": self._settings.mode,
                "escalation": self._escalation_status,
            },
            "targets": [self._target_row(engine, e) for e in engine.entries()],
            "functions": engine.active(),
            "escalations": self._escalator.rows() if self._escalator is not None else [],
            # Escalations that never ran: refused by a budget or a full queue, dropped at exit, failed.
            "escalation_losses": self._escalator.losses() if self._escalator is not None else {},
        }

    @staticmethod
    def _target_row(engine: Engine, entry: Entry) -> dict[str, Any]:
        pattern = entry.request.pattern
        functions = engine.functions_of(entry)
        return {
            "id": entry.id,
            "pattern": pattern.text,
            "source": entry.request.source,
            **describe_request(entry.request),
            "functions": functions,
            "waiting": not functions and not _loaded_modules(pattern),
            "errors": dict(entry.errors),
        }

    # -- add -----------------------------------------------------------------------------------
    def add_targets(self, message: dict[str, Any]) -> dict[str, Any]:
        requests = self.requests_for(message, source="control")
        engine = self._engine()
        results = [self._apply(engine, request) for request in requests]
        return {"ok": all(r["ok"] for r in results), "results": results}

    @staticmethod
    def requests_for(message: dict[str, Any], source: str) -> list[Request]:
        """Validate an ``add`` request into one :class:`Request` per pattern (all or none)."""
        patterns = _patterns(message.get("patterns"))
        capture = message.get("locals")
        if capture is not None and capture != "*":
            capture = _names(capture)
        lines = _lines(message.get("lines"))
        level = message.get("level")
        if level is not None and (type(level) is not str or level not in LEVELS):
            raise RequestError(f"level {_shown(level)} is not valid; accepted: {', '.join(LEVELS)}")
        mode = message.get("mode", "auto")
        if type(mode) is not str:  # [] is not "auto"; a wrong string is refused by make_request
            raise RequestError(f"mode {_shown(mode)} is not valid; accepted: {', '.join(TARGET_MODES)}")
        requests = []
        for text in patterns:
            try:
                request = api.make_request(
                    text, mode=mode, capture_locals=capture, lines=lines, level=level, source=source
                )
            except ValueError as exc:
                raise RequestError(str(exc)) from None
            if lines and not request.pattern.names_function:
                raise RequestError(f"lines need a pattern naming one function, not {text!r}")
            requests.append(request)
        return requests

    def _apply(self, engine: Engine, request: Request) -> dict[str, Any]:
        pattern = request.pattern
        result: dict[str, Any] = {"pattern": pattern.text, **describe_request(request)}
        handle = engine.add(request)
        entry = next((e for e in engine.entries() if e.request is request), None)
        functions = handle.functions
        loaded = _loaded_modules(pattern)
        failure = ""
        if entry is not None and entry.errors:
            failure = entry.failure()
        elif not functions and loaded and all(engine.excluded(m) for m in loaded):
            failure = f"{', '.join(loaded[:3])} is excluded (the exclude setting, or otel-scope's own code)"
        elif not functions and loaded:
            failure = (
                f"nothing in {', '.join(loaded[:3])} matches it (functions and methods only: properties, "
                "builtins and dunders other than __init__/__call__ are left alone)"
            )
        if failure:
            handle.remove()
            return {**result, "ok": False, "error": f"{pattern.text}: {failure}"}
        rows = {row["function"]: row for row in engine.active()}
        result.update(
            ok=True,
            id=entry.id if entry is not None else None,
            functions=[
                {"function": f, "mechanism": rows[f]["mechanism"], "installed": rows[f]["installed"]}
                for f in functions
                if f in rows
            ],
            waiting=not functions,
            plan=list(decide(request, engine.settings).reasons),
        )
        if not functions:
            result["note"] = f"module {pattern.module} is not imported yet: applied when it is"
        return result

    # -- remove --------------------------------------------------------------------------------
    def remove_targets(self, message: dict[str, Any]) -> dict[str, Any]:
        engine = self._engine()
        if message.get("all") is True:
            if "patterns" in message:
                raise RequestError("remove takes either 'patterns' or 'all', not both")
            if self._escalator is not None:
                self._escalator.end("removed")
            removed = [self._removed_row(engine, e) for e in engine.entries()]
            engine.remove_all()
            return {"ok": True, "removed": removed}
        if "all" in message and message["all"] is not False:
            raise RequestError("'all' must be true or false")
        wanted = []
        for text in _patterns(message.get("patterns")):
            try:
                wanted.append(parse_pattern(text).text)
            except ValueError as exc:
                raise RequestError(str(exc)) from None
        entries = [e for e in engine.entries() if e.request.by_user]
        missing = [w for w in wanted if not any(e.request.pattern.text == w for e in entries)]
        if missing:
            active = sorted({e.request.pattern.text for e in entries})
            raise RequestError(
                f"no active target {', '.join(map(repr, missing))}; active: {', '.join(active) or 'none'}"
                " (nothing was removed)"
            )
        removed = []
        for entry in entries:
            if entry.request.pattern.text in wanted:
                removed.append(self._removed_row(engine, entry))
                engine.remove(entry)
        if self._escalator is not None:
            self._escalator.end("its target was removed", {f for row in removed for f in row["functions"]})
        return {"ok": True, "removed": removed}

    @staticmethod
    def _removed_row(engine: Engine, entry: Entry) -> dict[str, Any]:
        return {
            "pattern": entry.request.pattern.text,
            "source": entry.request.source,
            "functions": engine.functions_of(entry),
        }


def _shown(value: object, limit: int = 200) -> str:
    """``repr(value)`` for an error message, cut to about ``limit`` characters: a request can be
    64 KiB, and a reply (or a terminal) is no place to echo all of it."""
    return _cut(repr(value), limit)


def _cut(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit]}…(+{len(text) - limit} chars)"


def _loaded_modules(pattern: Any) -> list[str]:
    return sorted(name for name in list(sys.modules) if pattern.matches_module(name))


def _patterns(value: object) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise RequestError("'patterns' must be a non-empty list of target patterns")
    return value


def _names(value: object) -> list[str]:
    if isinstance(value, str):
        value = [n.strip() for n in value.split(",") if n.strip()]
    if not isinstance(value, list) or not value:
        raise RequestError("'locals' must be \"*\" or a non-empty list of variable names")
    bad = [n for n in value if not isinstance(n, str) or not n.isidentifier()]
    if bad:
        raise RequestError(f"'locals' has {bad!r}, which are not variable names; accepted: \"*\" or names")
    return value


def _lines(value: object) -> list[int]:
    if value is None:
        return []
    if isinstance(value, str):
        parts = value.split("+")
        if not all(p.strip().isdigit() for p in parts):
            raise RequestError(
                f"'lines' {value!r} is not valid; accepted: line numbers joined by '+' (15+22)"
            )
        value = [int(p) for p in parts]
    if not isinstance(value, list) or not all(type(n) is int and n >= 1 for n in value):
        raise RequestError("'lines' must be line numbers from 1 (a list, or a string such as '15+22')")
    return value
