"""How an exception is recorded on a span without running user code or leaking a secret.

It lives with the serializer because an exception's message and stack trace are user values:
the runtime wrappers, the compile-time recorder and the process session's excepthook all record
exceptions through this one function.
"""

from __future__ import annotations

import linecache
import logging
import sys
from types import TracebackType
from typing import TYPE_CHECKING

from opentelemetry.trace import Span, Status, StatusCode

from otel_scope import semconv

if TYPE_CHECKING:
    from otel_scope.capture.serializer import Serializer

_log = logging.getLogger("otel_scope")


def cancelled(exc: BaseException) -> bool:
    """Whether ``exc`` is asyncio's cancellation (``task.cancel()``, a deadline of
    ``asyncio.timeout``/``wait_for`` running out), read without importing asyncio: a program
    that never imported it cannot raise its ``CancelledError``."""
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and issubclass(type(exc), asyncio.CancelledError)


def record_call_end(span: Span, exc: BaseException, serializer: Serializer) -> None:
    """Record how ``exc`` ended the call ``span`` stands for, in both mechanisms alike.

    A cancellation is how asyncio stops a coroutine it no longer needs, not a fault of the
    coroutine: ``otel_scope.cancelled`` says so and the status stays unset, with no exception
    event (what opentelemetry-instrumentation-asyncio records for a cancelled coroutine, and
    what escalation already assumes). The caller that cancelled, or the ``TimeoutError`` a
    deadline raises in the awaiting coroutine, is where a failure shows, if it is one. Any
    other exception is recorded by :func:`record_exception`.
    """
    if cancelled(exc):
        try:
            span.set_attribute(semconv.CANCELLED, True)
        except Exception:  # as record_exception: never disturb the exception being propagated
            _log.debug("otel-scope could not record a cancellation", exc_info=True)
        return
    record_exception(span, exc, serializer)


def record_exception(span: Span, exc: BaseException, serializer: Serializer) -> None:
    """Record ``exc`` on ``span`` as an ``exception`` event with ERROR status, never raising.

    Unlike ``Span.record_exception`` this never calls a user exception's ``__str__``: the message
    goes through the safe serializer's view of the exception's ``args``. Message and stack trace
    are scrubbed of secrets found by value (a URL's password, a quoted header, a source line
    ``password = "..."``), since both are text made of user values.
    """
    try:
        type_name = serializer.type_name(exc)  # read through type's own descriptors
        # The builtin slot, not a user property (typeshed types BaseException.args as a tuple).
        args = BaseException.args.__get__(exc)  # type: ignore[attr-defined]
        if len(args) == 1 and type(args[0]) is str:
            message = serializer.scrub(args[0][: serializer.max_length + 256])[: serializer.max_length]
        else:
            message = ", ".join(serializer(arg) for arg in args)
        stack = serializer.scrub(format_traceback(exc.__traceback__)) if exc.__traceback__ else ""
        span.add_event(
            "exception",
            {
                semconv.EXCEPTION_TYPE: type_name,
                semconv.EXCEPTION_MESSAGE: message,
                "exception.stacktrace": f"{stack}{type_name}: {message}",
            },
        )
        span.set_status(Status(StatusCode.ERROR, f"{type_name}: {message}"))
    except Exception:  # recording must never disturb the exception being propagated
        _log.debug("otel-scope could not record an exception", exc_info=True)


_REPEATS_SHOWN = 3  # as the interpreter's own tracebacks: then "[Previous line repeated N more times]"


def format_traceback(tb: TracebackType | None) -> str:
    """``tb`` as ``traceback.format_tb`` writes it, without the ``^^^^`` lines under each call.

    On 3.11+ ``format_tb`` finds those carets by parsing every frame's source line with ``ast``:
    about 90 of the 120 microseconds an exception cost to record, paid on the traced call's
    thread (package-wide targets record every call that raises, and libraries such as jinja2
    raise as control flow). A span's stack trace is read for its frames, not the carets.
    """
    lines: list[str] = []
    last: tuple[str, int, str] | None = None
    repeated = 0
    while tb is not None:
        frame, lineno = tb.tb_frame, tb.tb_lineno
        code = frame.f_code
        where = (code.co_filename, lineno, code.co_name)
        tb = tb.tb_next
        if where == last:
            repeated += 1
            if repeated >= _REPEATS_SHOWN:
                continue
        else:
            _repeats(lines, repeated)
            last, repeated = where, 0
        source = linecache.getline(code.co_filename, lineno, frame.f_globals).strip()
        lines.append(f'  File "{code.co_filename}", line {lineno}, in {code.co_name}\n')
        if source:
            lines.append(f"    {source}\n")
    _repeats(lines, repeated)
    return "".join(lines)


def _repeats(lines: list[str], repeated: int) -> None:
    if repeated >= _REPEATS_SHOWN:
        more = repeated - _REPEATS_SHOWN + 1
        lines.append(f"  [Previous line repeated {more} more time{'s' if more > 1 else ''}]\n")
