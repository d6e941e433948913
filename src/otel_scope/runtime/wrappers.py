"""The wrapt wrappers that turn one function into one span per call.

A :class:`RuntimeProbe` holds everything that can be computed once per function (span name,
``code.*`` attributes, argument attribute keys, the callable's kind), so a call pays only for
what cannot be known in advance. The order on every call is fixed: enabled and not left out by
call sampling (the probe's ``gate``, see :meth:`RuntimeProbe.skip_at`)? rate limit? would the span
record (:func:`tracing.decide`)? Only then are arguments serialized and a span made.

Generators and async generators get a span that covers the whole iteration, ends on
exhaustion, ``close()`` or error, and is current only while the generator body runs.

A probe with ``state`` set (a ``--scope-state`` target) also records which attributes of the
receiver a call changed (:mod:`otel_scope.runtime.state`); that takes a separate path, so a call
without it pays one attribute check. Each recorded span also takes the messages waiting for it
in its thread or task (:mod:`otel_scope.runtime.messages`), once the process has any.
"""

from __future__ import annotations

import inspect
import logging
import types
from collections.abc import Callable
from types import CodeType, CoroutineType, FunctionType, GeneratorType, MethodType
from typing import Any, SupportsIndex

import wrapt
from opentelemetry import context as otel_context
from opentelemetry.trace import Span

from otel_scope import semconv
from otel_scope.callables import binds_arguments, innermost_function
from otel_scope.capture import RateLimiter, Serializer
from otel_scope.capture.exceptions import cancelled, record_call_end
from otel_scope.capture.sampling import OPEN, SHUT, CallSampler, Gate, budget
from otel_scope.runtime import state, tracing

#: What runs after each recorded runtime call, before its span ends: ``hook(probe, span, exc)``
#: with ``exc`` the exception the call raised, else ``None``. Runs on the caller's thread.
FinishHook = Callable[["RuntimeProbe", Span, "BaseException | None"], None]

_log = logging.getLogger("otel_scope")

# Names that say nothing worth a span attribute: the receiver is already in code.function.name.
_RECEIVER_NAMES = ("self", "cls")


def qualified_name(module: str, qualname: str) -> str:
    return f"{module}.{qualname}"


def _installed_callable(obj: Any) -> Any:
    """The function a classmethod/staticmethod/bound method calls: it decides the calling kind."""
    return obj.__func__ if isinstance(obj, (classmethod, staticmethod, MethodType)) else obj


def _kind(func: Any) -> str:
    if inspect.isasyncgenfunction(func):
        return "asyncgen"
    if inspect.iscoroutinefunction(func):
        return "coroutine"
    if inspect.isgeneratorfunction(func):
        return "generator"
    return "function"


class RuntimeProbe:
    """One instrumented function: precomputed span data plus the per-call logic."""

    __slots__ = (
        "_calls",
        "_enabled",
        "arg_keys",
        "attributes",
        "capture_args",
        "capture_return",
        "code",
        "deep",
        "func",
        "gate",
        "kind",
        "limiter",
        "name",
        "on_finish",
        "receiver_in_args",
        "sampler",
        "serializer",
        "skip_first",
        "state",
        "varargs_key",
    )

    def __init__(
        self,
        func: Any,
        module: str,
        qualname: str,
        *,
        target: str,
        serializer: Serializer,
        capture_args: bool = True,
        capture_return: bool = True,
        rate_limit: float = 0.0,
        mechanism: str = semconv.MECHANISM_RUNTIME,
        sampler: CallSampler | None = None,
    ) -> None:
        # The innermost function gives code attributes and argument names, never the calling kind.
        plain = innermost_function(func)
        code: CodeType | None = plain.__code__ if plain is not None else None
        self.name = qualified_name(module, qualname)
        # How the call behaves comes from the object installed at the attribute, never from what
        # it wraps: a @contextmanager function wraps a generator but returns a context manager.
        self.kind = _kind(_installed_callable(func))
        self.attributes: dict[str, Any] = {
            semconv.CODE_FUNCTION_NAME: self.name,
            semconv.MECHANISM: mechanism,
            semconv.TARGET: target,
        }
        if code is not None:
            self.attributes[semconv.CODE_FILE_PATH] = code.co_filename
            self.attributes[semconv.CODE_LINE_NUMBER] = code.co_firstlineno
        self.serializer = serializer
        # A partial prepends arguments of its own: positions no longer line up with the names.
        self.capture_args = capture_args and code is not None and not binds_arguments(func)
        self.capture_return = capture_return
        self.limiter = RateLimiter(rate_limit) if rate_limit > 0 else None
        self.sampler = sampler  # None: every call is kept (named exactly, or sampling off)
        self._calls = 0  # calls seen while enabled, of a probe without a sampler (see calls)
        self.enabled = True  # and the gate that goes with it
        self.deep = False  # compile-time capture also active: mark calls for claim_call_span
        self.state = False  # capture the instance's attributes before and after each call
        # Reached through a code trampoline for a method: the receiver is the first argument,
        # as the function sees it (a wrapper is handed it apart, as ``instance``).
        self.receiver_in_args = False
        self.code = code
        # The call marker names the code about to run, read at call time: on-demand recompilation
        # swaps the function's __code__ after this probe was made. Behind a code trampoline this
        # is the trampoline's copy, which holds the function's own (maybe recompiled) code.
        # None for objects with no function behind them; ``deep`` is only ever set on probes of a
        # function (compile-time capture needs its code), so the call path reads it unchecked.
        self.func: Any = plain
        # Called in order after each recorded call, before its span ends: the engine's finish
        # hooks (exception frames, escalation), replaced whole when one is added or removed.
        self.on_finish: tuple[FinishHook, ...] = ()
        names: tuple[str, ...] = ()
        self.varargs_key: str | None = None
        if code is not None:
            names = code.co_varnames[: code.co_argcount]  # keyword-only ones arrive in kwargs
            n = code.co_argcount + code.co_kwonlyargcount
            flags = code.co_flags
            if flags & inspect.CO_VARARGS:
                self.varargs_key = semconv.ARG_PREFIX + code.co_varnames[n]
        self.skip_first = bool(names) and names[0] in _RECEIVER_NAMES
        self.arg_keys = tuple(semconv.ARG_PREFIX + name for name in names)

    @property
    def enabled(self) -> bool:
        """Whether calls are traced. Switched off, the gate is :data:`~otel_scope.capture.sampling.SHUT`:
        the entry test runs each call untraced, uncounted, with no call into otel-scope."""
        return self._enabled

    @enabled.setter
    def enabled(self, enabled: bool) -> None:
        self._enabled = enabled
        gate: Gate = OPEN if self.sampler is None else self.sampler
        self.gate = gate if enabled else SHUT

    @property
    def calls(self) -> int:
        """Calls seen while enabled: the sampler's numbering, which counts every call it saw
        (before a fork too), else the probe's own count."""
        return self._calls if self.sampler is None else self.sampler.numbered

    # -- attribute building (only after the span is known to record) ---------------------------
    def _call_attributes(
        self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        attrs = dict(self.attributes)
        if not self.capture_args:
            return attrs
        redacted = self.serializer.redacted
        try:
            keys = self.arg_keys
            # wrapt passes the receiver separately for bound calls; align names past it.
            offset = 1 if (self.skip_first and instance is not None) else 0
            named = self.serializer.named
            positional = len(keys) - offset
            for i, value in enumerate(args[:positional]):
                key = keys[i + offset]
                if i + offset == 0 and self.skip_first:
                    continue
                attrs[key] = named(key[len(semconv.ARG_PREFIX) :], value)
            if len(args) > positional and self.varargs_key is not None:
                attrs[self.varargs_key] = self.serializer(args[positional:])
            for name, value in kwargs.items():
                attrs[semconv.ARG_PREFIX + name] = named(name, value)
        except Exception:  # the serializer never raises; this guards our own alignment logic
            _log.debug("otel-scope could not record arguments of %s", self.name, exc_info=True)
        hidden = self.serializer.redacted - redacted
        if hidden > 0:  # what was hidden is counted where the user sees the values (a hint under threads)
            attrs[semconv.REDACTED_COUNT] = hidden
        return attrs

    def _finish(self, span: Span, exc: BaseException | None) -> None:
        for hook in self.on_finish:  # a failing hook must not skip the next one
            try:
                hook(self, span, exc)
            except Exception:
                _log.debug("otel-scope finish hook %r failed for %s", hook, self.name, exc_info=True)

    # -- the wrapper ---------------------------------------------------------------------------
    def __call__(self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The wrapt wrapper function: called instead of ``wrapped`` on every call."""
        gate = self.gate  # the entry test, as a code trampoline makes it (see skip_at)
        if (call := gate.tick()) < gate.next_check or self.skip_at(call):
            if self.kind != "function":
                return wrapped(*args, **kwargs)
            try:  # free unless it raises: a call that raises is recorded even when sampled out
                return wrapped(*args, **kwargs)
            except Exception as exc:
                self.failed_late(exc, instance, args, kwargs)
                raise
        return self.traced(wrapped, instance, args, kwargs)

    def skip_at(self, call: int) -> bool:
        """Whether call number ``call`` runs untraced: its sampler leaves it out.

        Every entry (the wrapper above, and code trampolines, which then call the function
        straight, with no tuple of arguments made) first makes an entry test with no call into
        otel-scope: ``gate.tick()`` (one C call) numbers the call, and a number below
        ``gate.next_check`` runs the function untraced; only the other calls ask here. So a call
        left out by call sampling, or made while the probe is switched off (its gate is then
        :data:`~otel_scope.capture.sampling.SHUT`), costs a few attribute reads and that C call.
        (The trampoline of a probe without a sampler reads ``gate.next_check`` alone: such a
        probe skips only while switched off.) A skipped call that raises goes to
        :meth:`failed_late`.
        """
        sampler = self.sampler
        return sampler is not None and not sampler.admit_at(call)

    def traced(self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run a call the entry test let through: a span, unless rate limits or sampling say no."""
        sampler = self.sampler
        if sampler is None:
            self._calls += 1  # a sampled probe's calls are its sampler's numbering
        if self.limiter is not None and not self.limiter.allow():
            return wrapped(*args, **kwargs)
        ctx = tracing.decide()
        if ctx is None:
            return wrapped(*args, **kwargs)
        kind = self.kind
        if kind != "function" or self.state:
            return self._call_special(kind, ctx, wrapped, instance, args, kwargs)
        attrs = self._call_attributes(instance, args, kwargs)
        if self.limiter is not None and self.limiter.dropped:
            attrs[semconv.RATE_LIMITED] = self.limiter.dropped
        if sampler is not None:
            budget().spend()
        code = self.func.__code__ if self.deep else None
        started = tracing.begin(self.name, attrs, ctx, code, owned=True, sampler=sampler)
        if started is None:
            return wrapped(*args, **kwargs)
        span, token = started
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            self._failed(span, exc)
            raise
        else:
            self._returned(span, result)
            return result
        finally:
            tracing.end_call(span, token)

    def failed_late(
        self, exc: Exception, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """A sampled-out call raised: record it now, as a span that starts when it failed.

        ``StopIteration`` is how iteration ends, not a failure. The function's next calls are
        kept in full (:meth:`CallSampler.reopen`) so what follows an error is seen.
        """
        sampler = self.sampler
        if sampler is None or not self._enabled or isinstance(exc, (StopIteration, StopAsyncIteration)):
            return  # switched off, or never sampled: nothing was left out
        sampler.reopen()
        ctx = tracing.decide()
        if ctx is None:  # not recorded after all (an unsampled trace): it stays counted as left out
            return
        sampler.recorded_late()
        attrs = self._call_attributes(instance, args, kwargs)
        attrs[semconv.SAMPLING_LATE] = True
        budget().spend()
        started = tracing.begin(self.name, attrs, ctx, None, owned=True, sampler=sampler)
        if started is None:  # the SDK's sampler said no: left out after all
            sampler.left_out_late()
            return
        span, token = started
        self._failed(span, exc)
        tracing.end_call(span, token)

    def _failed(self, span: Span, exc: BaseException) -> None:
        """The call raised ``exc``: the exception event, the finish hooks."""
        record_call_end(span, exc, self.serializer)
        self._finish(span, exc)

    def _returned(self, span: Span, result: Any) -> None:
        """The call returned ``result``: the return value, the finish hooks."""
        if self.capture_return:
            span.set_attribute(semconv.RETURN_VALUE, self.serializer(result))
        self._finish(span, None)

    def _call_special(
        self, kind: str, ctx: Any, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        attrs = self._call_attributes(instance, args, kwargs)
        if self.limiter is not None and self.limiter.dropped:  # every kind counts what it skipped
            attrs[semconv.RATE_LIMITED] = self.limiter.dropped
        if self.sampler is not None:
            budget().spend()
        code = self.func.__code__ if self.deep else None
        receiver = None
        if self.state:
            receiver = state.receiver_of(args[0] if self.receiver_in_args and args else instance)
        if kind == "function":  # only with state capture: plain calls take the path in __call__
            return self._call_with_state(ctx, attrs, code, receiver, wrapped, args, kwargs)
        if kind == "coroutine":
            return self._coroutine(ctx, attrs, code, wrapped(*args, **kwargs), receiver)
        # Generators: create the span now, but make it current only while the body runs. Their
        # body interleaves with the caller's, so state is not captured for them.
        started = tracing.begin(self.name, attrs, ctx, code, owned=True, sampler=self.sampler)
        if started is None:
            return wrapped(*args, **kwargs)
        span, token = started
        span_ctx = otel_context.get_current()
        try:
            gen = wrapped(*args, **kwargs)
        except BaseException as exc:
            record_call_end(span, exc, self.serializer)
            tracing.end_call(span, token)
            raise
        otel_context.detach(token)
        if kind == "generator":
            if type(gen) is GeneratorType and gen.gi_code.co_flags & inspect.CO_ITERABLE_COROUTINE:
                return _traced_awaitable_generator(self, gen, span, span_ctx)
            return _traced_generator(self, gen, span, span_ctx)
        return _traced_async_generator(self, gen, span, span_ctx)

    def _call_with_state(
        self,
        ctx: Any,
        attrs: dict[str, Any],
        code: CodeType | None,
        receiver: Any,
        wrapped: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """A plain call whose receiver's attributes are compared before and after."""
        started = tracing.begin(self.name, attrs, ctx, code, owned=True, sampler=self.sampler)
        if started is None:
            return wrapped(*args, **kwargs)
        span, token = started
        before = state.snapshot(receiver, self.serializer) if receiver is not None else None
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            state.record_changes(span, before, receiver, self.serializer)
            self._failed(span, exc)
            raise
        else:
            state.record_changes(span, before, receiver, self.serializer)
            self._returned(span, result)
            return result
        finally:
            tracing.end_call(span, token)

    async def _coroutine(
        self, ctx: Any, attrs: dict[str, Any], code: CodeType | None, coro: Any, receiver: Any = None
    ) -> Any:
        started = tracing.begin(self.name, attrs, ctx, code, owned=True, sampler=self.sampler)
        if started is None:
            return await coro
        span, token = started
        # Taken when the body starts running, not when the coroutine object was created.
        before = state.snapshot(receiver, self.serializer) if receiver is not None else None
        try:
            result = await coro
        except BaseException as exc:
            state.record_changes(span, before, receiver, self.serializer)
            self._failed(span, exc)
            raise
        else:
            state.record_changes(span, before, receiver, self.serializer)
            self._returned(span, result)
            return result
        finally:
            tracing.end_call(span, token)


_DRIVER = RuntimeProbe._coroutine.__code__  # what a traced ``async def`` returns runs this code


def awaited_coroutine(coro: Any) -> Any:
    """The user's coroutine inside one a traced ``async def`` returned, else ``coro`` itself.

    A traced coroutine function returns the probe's driver (:meth:`RuntimeProbe._coroutine`),
    which holds the user's coroutine in its local ``coro``; message capture names a task after
    what it will really run.
    """
    if type(coro) is CoroutineType and coro.cr_code is _DRIVER and coro.cr_frame is not None:
        return coro.cr_frame.f_locals.get("coro")
    return coro


def _end_generator(probe: RuntimeProbe, span: Span, end: str, count: int, exc: BaseException | None) -> None:
    if exc is not None and cancelled(exc):
        end = "cancelled"
    span.set_attribute(semconv.GENERATOR_END, end)
    span.set_attribute(semconv.YIELD_COUNT, count)
    if probe.sampler is not None:
        budget().spend_items(count)
    if exc is not None:
        record_call_end(span, exc, probe.serializer)
    probe._finish(span, exc)
    tracing.end_span(span)


def _traced_generator(probe: RuntimeProbe, gen: Any, span: Span, span_ctx: Any) -> Any:
    """Drive ``gen`` so that ``span`` is current exactly while its body runs."""
    count = 0
    to_send: Any = None
    to_throw: BaseException | None = None
    try:
        while True:
            token = otel_context.attach(span_ctx)
            try:
                if to_throw is not None:
                    exc, to_throw = to_throw, None
                    item = gen.throw(exc)
                else:
                    item = gen.send(to_send)
            except StopIteration as stop:
                if probe.capture_return and stop.value is not None:
                    span.set_attribute(semconv.RETURN_VALUE, probe.serializer(stop.value))
                _end_generator(probe, span, "exhausted", count, None)
                return stop.value
            except GeneratorExit:
                raise
            except BaseException as exc:
                _end_generator(probe, span, "error", count, exc)
                raise
            finally:
                otel_context.detach(token)
            count += 1
            try:
                to_send = yield item
            except GeneratorExit:
                token = otel_context.attach(span_ctx)
                try:
                    gen.close()
                finally:
                    otel_context.detach(token)
                _end_generator(probe, span, "closed", count, None)
                raise
            except BaseException as exc:
                to_send, to_throw = None, exc
    finally:
        if span.is_recording():  # abandoned without close(): garbage collection ends it
            _end_generator(probe, span, "closed", count, None)


# A ``@types.coroutine`` generator (asyncio's ``__sleep0``) is awaited, not iterated: its driver
# must be awaitable too, or ``await`` refuses it. The same code, flagged as types.coroutine flags it.
_traced_awaitable_generator = types.coroutine(
    FunctionType(_traced_generator.__code__, _traced_generator.__globals__, "_traced_awaitable_generator")
)


async def _traced_async_generator(probe: RuntimeProbe, agen: Any, span: Span, span_ctx: Any) -> Any:
    """The async twin of :func:`_traced_generator`."""
    count = 0
    to_send: Any = None
    to_throw: BaseException | None = None
    try:
        while True:
            token = otel_context.attach(span_ctx)
            try:
                if to_throw is not None:
                    exc, to_throw = to_throw, None
                    item = await agen.athrow(exc)
                else:
                    item = await agen.asend(to_send)
            except StopAsyncIteration:
                _end_generator(probe, span, "exhausted", count, None)
                return
            except GeneratorExit:
                raise
            except BaseException as exc:
                _end_generator(probe, span, "error", count, exc)
                raise
            finally:
                otel_context.detach(token)
            count += 1
            try:
                to_send = yield item
            except GeneratorExit:
                token = otel_context.attach(span_ctx)  # its cleanup runs inside the span, as in the sync twin
                try:
                    await agen.aclose()
                finally:
                    otel_context.detach(token)
                _end_generator(probe, span, "closed", count, None)
                raise
            except BaseException as exc:
                to_send, to_throw = None, exc
    finally:
        if span.is_recording():
            _end_generator(probe, span, "closed", count, None)


class ScopeFunctionWrapper(wrapt.FunctionWrapper[..., Any]):
    """The wrapper otel-scope installs: a wrapt ``FunctionWrapper`` that pickles like a function.

    Functions pickle by reference (module and qualified name); a plain wrapt proxy refuses to
    pickle at all, which would break ``ProcessPoolExecutor.submit(traced_function)`` and
    ``multiprocessing.Process(target=traced_function)``. This one pickles by the same reference,
    which resolves to the wrapper where otel-scope is active and to the function elsewhere.
    Objects that pickle by value (a ``functools.partial``) keep doing so, as the plain object.
    """

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        wrapped = self.__wrapped__
        qualname = getattr(wrapped, "__qualname__", None)
        if not isinstance(qualname, str):
            return wrapped.__reduce_ex__(protocol)
        return _by_reference, (wrapped.__module__, qualname)


def _by_reference(module: str, qualname: str) -> Any:
    import importlib

    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def install(owner: Any, attr: str, probe: RuntimeProbe) -> ScopeFunctionWrapper:
    """Wrap ``owner.attr`` with ``probe``; :func:`wrapt.unwrap_object` with the result undoes it."""
    wrapper: ScopeFunctionWrapper = wrapt.wrap_object(owner, attr, ScopeFunctionWrapper, (probe,))
    return wrapper


def is_ours(obj: Any) -> bool:
    """Whether ``obj`` is a wrapper installed by otel-scope."""
    return isinstance(obj, ScopeFunctionWrapper)
