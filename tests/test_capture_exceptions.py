"""How an exception is recorded: the stack trace a span carries, and what it costs to make."""

from __future__ import annotations

import re
import traceback

import jinja2
import pytest
from opentelemetry.sdk.trace import TracerProvider

from otel_scope.capture import Serializer
from otel_scope.capture.exceptions import format_traceback, record_exception

_CARETS = re.compile(r"^ +[\^~ ]+\n", re.MULTILINE)  # the lines 3.11+ draws under each call


def _raised(call) -> BaseException:
    with pytest.raises(BaseException) as raised:
        call()
    return raised.value


def _stock(exc: BaseException) -> str:
    return _CARETS.sub("", "".join(traceback.format_tb(exc.__traceback__)))


def test_the_stack_trace_of_a_real_library_error_is_pythons_own_without_the_caret_lines() -> None:
    exc = _raised(lambda: jinja2.Environment().from_string("{% for x in %}"))
    assert isinstance(exc, jinja2.TemplateSyntaxError)
    ours = format_traceback(exc.__traceback__)
    assert "jinja2/environment.py" in ours.replace("\\", "/")
    assert ours == _stock(exc)


@pytest.mark.parametrize("depth", [0, 1, 2, 3, 4, 50])
def test_repeated_frames_fold_as_the_interpreter_folds_them(depth: int) -> None:
    def recurse(n: int) -> None:
        if n == 0:
            raise ValueError("bottom")
        recurse(n - 1)

    exc = _raised(lambda: recurse(depth))
    assert format_traceback(exc.__traceback__) == _stock(exc)
    if depth >= 4:
        assert f"[Previous line repeated {depth - 3} more time" in format_traceback(exc.__traceback__)


def test_a_recorded_exception_carries_its_frames_type_and_message() -> None:
    exc = _raised(lambda: jinja2.Environment().from_string("{{ 1 + }}"))
    span = TracerProvider().get_tracer("test").start_span("call")
    record_exception(span, exc, Serializer())
    (event,) = span.events
    stack = event.attributes["exception.stacktrace"]
    assert stack.startswith("  File ")
    assert stack.endswith(f"jinja2.exceptions.TemplateSyntaxError: {exc.args[0]}")
    assert "^^^" not in stack
    assert event.attributes["exception.type"] == "jinja2.exceptions.TemplateSyntaxError"
