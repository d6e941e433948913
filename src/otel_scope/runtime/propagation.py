"""Carrying the OTel context into threads and executor tasks, so nesting follows the work.

``contextvars`` do not flow into a new ``threading.Thread`` or into a ``concurrent.futures``
worker: without help, a traced function called in a worker starts a new branch of the trace
instead of nesting under the call that handed the work over. When a hand-off happens while a
span is current, the current OTel context is captured and made current around the thread's
``run`` (or the submitted callable). Only the OTel context travels, never the user's own
context variables, and with no current span nothing is captured at all.

Threads that ``concurrent.futures``, ``multiprocessing``, ``asyncio`` and otel-scope itself start
for their own purposes (a pool's workers, a queue's feeder, a timer) are left alone: they outlive
the call that happened to start them, so carrying its context would parent all their later work
under that call. The work handed to a pool is carried per task instead.

The patches are wrapt wrappers on ``Thread.start`` and ``ThreadPoolExecutor.submit``, removed
exactly by :func:`uninstall`. :mod:`otel_scope.runtime.messages` records the hand-offs themselves
through :data:`handoff_hook`.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import threading
import types
from collections.abc import Callable
from typing import Any

import wrapt
from opentelemetry import context as otel_context

from otel_scope import _forksafe
from otel_scope._sdk import SPAN_KEY
from otel_scope.callables import function_module

_installed: list[tuple[Any, str, Any]] = []
_lock = _forksafe.lock()

#: What a hand-off will run, as ``(target, args, kwargs)``: what its message summary shows.
Payload = tuple[Any, tuple[Any, ...], dict[str, Any]]

#: Called as ``hook(channel, ctx, fn, (target, args, kwargs))`` at each hand-off that carries a
#: context, before ``fn`` (what the worker will run) is wrapped to carry it; may return a
#: replacement for ``fn``. The messages feature records hand-offs through it. None: no hook.
handoff_hook: Callable[[str, Any, Callable[..., Any], Payload], Callable[..., Any] | None] | None = None

#: True while a hand-off primitive does its own internal hand-offs (a pool's submit puts a work
#: item on its queue and may start threads): those are plumbing, not messages of the user's.
internal: contextvars.ContextVar[bool] = contextvars.ContextVar("otel_scope_internal_handoff", default=False)

# Modules whose own threads are library plumbing (see the module docstring).
_PLUMBING = ("concurrent.futures.", "multiprocessing.", "asyncio.", "otel_scope.")


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
    return ctx if ctx.get(SPAN_KEY) is not None else None


def _module_of(cls: type) -> str:
    module = vars(cls).get("__module__")  # the class's own namespace: no metaclass involved
    return module if type(module) is str else ""


def _thread_payload(thread: threading.Thread) -> Payload:
    """What ``thread`` will run, as ``(target, args, kwargs)``: what a hand-off summary shows."""
    namespace = vars(thread)
    if isinstance(thread, threading.Timer):
        return (namespace.get("function"), namespace.get("args", ()), namespace.get("kwargs", {}))
    target = namespace.get("_target")
    if target is None or type(thread).run is not threading.Thread.run:
        return (thread.run, (), {})  # a subclass's own run()
    return (target, namespace.get("_args", ()), namespace.get("_kwargs", {}))


def _is_plumbing(thread: threading.Thread, target: Any) -> bool:
    """Whether ``thread`` (running ``target``) is a library's own worker (see the module docstring)."""
    if _module_of(type(thread)).startswith(_PLUMBING):
        return True
    if type(target) is types.MethodType:
        target = target.__func__
    if type(target) is types.FunctionType:
        module = function_module(target)
        return type(module) is str and module.startswith(_PLUMBING)
    return False


def _thread_start(
    wrapped: Any, instance: threading.Thread, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    ctx = _current_if_traced()
    if ctx is None or internal.get():
        return wrapped(*args, **kwargs)
    payload = _thread_payload(instance)
    if not _is_plumbing(instance, payload[0]):
        run = instance.run  # the subclass's own run(), if it has one
        if handoff_hook is not None:
            run = handoff_hook("threading.Thread", ctx, run, payload) or run
        instance.run = _carrying(ctx, run)  # type: ignore[method-assign]
    return wrapped(*args, **kwargs)


def _executor_submit(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    ctx = _current_if_traced()
    if ctx is None or not args or internal.get():
        return wrapped(*args, **kwargs)
    fn = args[0]
    if handoff_hook is not None:
        fn = handoff_hook("concurrent.futures.ThreadPoolExecutor", ctx, fn, (fn, args[1:], kwargs)) or fn
    token = internal.set(True)  # the pool's work queue and the workers it starts are plumbing
    try:
        return wrapped(_carrying(ctx, fn), *args[1:], **kwargs)
    finally:
        internal.reset(token)


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
