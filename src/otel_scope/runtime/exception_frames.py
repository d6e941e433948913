"""The locals of the frames an exception passed through, on the runtime span of the call that raised.

Escalation gives locals for the *next* calls of a failing function; this gives them for the very
first failure, with no recompilation: when a runtime-traced call raises, its traceback still
holds every frame the exception passed through, and each frame still holds its locals. They are
read once, at that moment, through the same safe serializer (no user code, bounded, redacted) as
every other value, and become one ``otel_scope.exception.frame`` event per frame, outermost first,
each with ``code.function.name``, ``code.file.path``, ``code.line.number`` (the line the
exception passed) and ``otel_scope.var.<name>`` per local.

Which frames: those of user code between this call's wrapper and the next otel-scope frame down
the traceback. Frames of the standard library, of installed packages (``site-packages``), of
otel-scope itself, of modules the ``exclude`` setting names, and module or class bodies (whose
"locals" are a whole namespace) are skipped. Stopping at the next otel-scope frame means that when
a traced function calls another traced function that raises, the inner span gets the inner
frames and the outer span only its own: every frame is recorded once, on the span it belongs to.

Budgets: the innermost :data:`MAX_FRAMES` frames (as ddtrace's Exception Replay), at most
:data:`MAX_LOCALS` locals per frame, one capture per exception site (the innermost captured frame
and its line) per :data:`SITE_INTERVAL_S`, and :data:`PROCESS_PER_SECOND` captures per second in
the whole process. A capture that a budget refuses is simply not made: the span still has its
``exception`` event.
"""

from __future__ import annotations

import inspect
import logging
import os
import site
import sysconfig
import time
from collections.abc import Callable
from types import CodeType, FrameType, TracebackType
from typing import Any

from otel_scope import _forksafe, semconv
from otel_scope.capture import RateLimiter, Serializer
from otel_scope.runtime import trampoline
from otel_scope.runtime.escalation import CONTROL_FLOW

_log = logging.getLogger("otel_scope")

MAX_FRAMES = 8
MAX_LOCALS = 32
SITE_INTERVAL_S = 60.0
PROCESS_PER_SECOND = 10.0
_CACHE_LIMIT = 4096  # code objects and sites remembered before the caches restart
_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # the package's folder
_FUNCTION_FLAGS = inspect.CO_OPTIMIZED | inspect.CO_NEWLOCALS  # a function's frame, not a namespace
_OWN_NAMES = "_otel_scope_"  # the prefix of the locals that rewritten code adds


def _library_dirs() -> tuple[str, ...]:
    """Directories whose code is not the user's: the standard library and installed packages."""
    paths = sysconfig.get_paths()
    dirs = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    try:
        dirs.update(site.getsitepackages())
    except AttributeError:  # virtualenv's old site.py
        pass
    user_site = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if isinstance(user_site, str):
        dirs.add(user_site)
    return tuple(sorted(os.path.join(os.path.realpath(d), "") for d in dirs if d))


class ExceptionFrames:
    """Records exception frames on runtime spans; :meth:`on_finish` is a probe finish hook (it
    returns at once for calls that did not raise)."""

    def __init__(self, serializer: Serializer, excluded: Callable[[str], bool]) -> None:
        self._serializer = serializer
        self._excluded = excluded  # module name -> never record (otel-scope's exclude setting)
        self._library = _library_dirs()
        self._user_code: dict[CodeType, bool] = {}
        self._site_last: dict[tuple[CodeType, int], float] = {}
        self._process_budget = RateLimiter(PROCESS_PER_SECOND)
        self._lock = _forksafe.lock()

    def on_finish(self, probe: Any, span: Any, exc: BaseException | None) -> None:
        if exc is None or not isinstance(exc, Exception) or isinstance(exc, CONTROL_FLOW):
            return
        if not span.is_recording():
            return
        frames = self._own_frames(exc.__traceback__)
        if not frames:
            return
        innermost, line = frames[-1]
        site_key = (innermost.f_code, line)
        now = time.monotonic()
        with self._lock:
            last = self._site_last.get(site_key)
            if last is not None and now - last < SITE_INTERVAL_S:
                return
            if not self._process_budget.allow():
                return
            if len(self._site_last) >= _CACHE_LIMIT:
                self._site_last.clear()
            self._site_last[site_key] = now
        redacted_before = self._serializer.redacted
        for frame, line in frames[-MAX_FRAMES:]:
            span.add_event(semconv.EVENT_EXCEPTION_FRAME, self._frame_attributes(frame, line))
        redacted = self._serializer.redacted - redacted_before
        if redacted > 0:
            span.set_attribute(semconv.REDACTED_COUNT, redacted)

    # -- which frames --------------------------------------------------------------------------
    def _own_frames(self, tb: TracebackType | None) -> list[tuple[FrameType, int]]:
        """The user frames of this call: after our wrapper, up to the next otel-scope frame."""
        while tb is not None and self._is_own(tb.tb_frame.f_code):  # this call's wrapper
            tb = tb.tb_next
        frames = []
        while tb is not None:
            code = tb.tb_frame.f_code
            if self._is_own(code):  # an inner traced call: its span has the frames below
                break
            if self._is_user_function(tb.tb_frame):
                frames.append((tb.tb_frame, tb.tb_lineno))
            tb = tb.tb_next
        return frames

    @staticmethod
    def _is_own(code: CodeType) -> bool:
        return code.co_filename.startswith(_OWN_DIR) or trampoline.is_trampoline(code)

    def _is_user_function(self, frame: FrameType) -> bool:
        code = frame.f_code
        answer = self._user_code.get(code)
        if answer is None:
            filename = code.co_filename
            answer = (
                code.co_flags & _FUNCTION_FLAGS == _FUNCTION_FLAGS
                and not filename.startswith("<")
                and not os.path.realpath(filename).startswith(self._library)
                and not self._excluded(str(frame.f_globals.get("__name__", "")))
            )
            if len(self._user_code) >= _CACHE_LIMIT:
                self._user_code.clear()
            self._user_code[code] = answer
        return answer

    # -- what one frame records ----------------------------------------------------------------
    def _frame_attributes(self, frame: FrameType, line: int) -> dict[str, Any]:
        code = frame.f_code
        module = frame.f_globals.get("__name__", "")
        qualname = getattr(code, "co_qualname", code.co_name)  # co_qualname: Python 3.11+
        attrs: dict[str, Any] = {
            semconv.CODE_FUNCTION_NAME: f"{module}.{qualname}" if module else qualname,
            semconv.CODE_FILE_PATH: code.co_filename,
            semconv.CODE_LINE_NUMBER: line,
            semconv.MECHANISM: semconv.MECHANISM_RUNTIME,
        }
        named = self._serializer.named
        kept = 0
        try:
            for name, value in frame.f_locals.items():
                if type(name) is not str or name.startswith(_OWN_NAMES):
                    continue
                if kept == MAX_LOCALS:
                    break
                attrs[semconv.VAR_PREFIX + name] = named(name, value)
                kept += 1
        except Exception:  # reading a frame's locals must never disturb the exception
            _log.debug("otel-scope could not read the locals of %s", qualname, exc_info=True)
        return attrs
