"""Carrying the OTel context into threads and executor tasks, so nesting follows the work.

``contextvars`` do not flow into a new ``threading.Thread`` or into a ``concurrent.futures``
worker: without help, a traced function called in a worker starts a new branch of the trace
instead of nesting under the call that handed the work over. When a hand-off happens while a
span is current, the current OTel context is captured and made current around the thread's
``run`` (or the submitted callable). Only the OTel context travels, never the user's own
context variables, and with no current span nothing is captured at all.

The patches are wrapt wrappers on ``Thread.start`` and ``Executor``/``ThreadPoolExecutor.submit``,
removed exactly by :func:`uninstall`.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

import wrapt
from opentelemetry import context as otel_context
from opentelemetry.trace.propagation import _SPAN_KEY

_installed: list[tuple[Any, str, Any]] = []
_lock = threading.Lock()

#: Called as ``hook(kind, ctx, target)`` at each hand-off that carries a context, and may return a
#: replacement callable (the messages feature records hand-offs through it). None: no hook.
handoff_hook: Callable[[str, Any, Callable[..., Any]], Callable[..., Any] | None] | None = None


def _carrying(ctx: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    def run_in_context(*args: Any, **kwargs: Any) -> Any:
        token = otel_context.attach(ctx)
        try:
            return fn(*args, **kwargs)
        finally:
            otel_context.detach(token)

    return run_in_context


def _current_if_traced() -> Any:
    ctx = otel_context.get_current()
    return ctx if ctx.get(_SPAN_KEY) is not None else None


def _thread_start(wrapped: Any, instance: threading.Thread, args: tuple, kwargs: dict) -> Any:
    ctx = _current_if_traced()
    if ctx is not None:
        run = instance.run  # the subclass's own run(), if it has one
        if handoff_hook is not None:
            run = handoff_hook("threading.Thread", ctx, run) or run
        instance.run = _carrying(ctx, run)  # type: ignore[method-assign]
    return wrapped(*args, **kwargs)


def _executor_submit(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    ctx = _current_if_traced()
    if ctx is None or not args:
        return wrapped(*args, **kwargs)
    fn = args[0]
    if handoff_hook is not None:
        fn = handoff_hook(f"{type(instance).__name__}", ctx, fn) or fn
    return wrapped(_carrying(ctx, fn), *args[1:], **kwargs)


def install() -> None:
    """Patch thread start and executor submit (idempotent)."""
    with _lock:
        if _installed:
            return
        for owner, name, wrapper in (
            (threading.Thread, "start", _thread_start),
            (concurrent.futures.ThreadPoolExecutor, "submit", _executor_submit),
        ):
            handle = wrapt.wrap_function_wrapper(owner, name, wrapper)
            _installed.append((owner, name, handle))


def uninstall() -> None:
    """Put the original ``start``/``submit`` back."""
    with _lock:
        while _installed:
            owner, name, handle = _installed.pop()
            wrapt.unwrap_object(owner, name, handle, missing_ok=True)
