"""Starting and ending otel-scope's spans cheaply, for both mechanisms.

The plain OTel API decides sampling *inside* ``start_span``, after it has allocated IDs,
attributes and the span itself: a sampled-out span still costs about half a recording one.
:func:`decide` instead decides first, from the parent's ``sampled`` flag and a classification
of the SDK's sampler made once, and returns ``None`` when nothing would be recorded, so a caller
pays for nothing more; :func:`begin` then starts the span.

:func:`begin` also leaves a *call marker* in the context it attaches, naming the code object
the wrapper is about to run. Compile-time instrumentation of that same function finds the marker
through :func:`claim_call_span` and puts its events on this span instead of opening a second
one: one span per call, whichever mechanisms are active.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import time
from collections.abc import Callable, Iterator
from types import CodeType, CoroutineType, FrameType, GeneratorType
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span

from otel_scope import _forksafe, semconv
from otel_scope._sdk import (
    SPAN_CONTEXT_FLAGS,
    SPAN_CONTEXT_VALID,
    SPAN_KEY,
    SUPPRESS_INSTRUMENTATION_KEY,
    SpanContextType,
    context_variable,
    global_provider,
    parent_based_delegates,
    set_attributes,
)
from otel_scope._version import __version__
from otel_scope.sessions import state as session_state

if TYPE_CHECKING:
    from contextvars import Token

    from otel_scope.capture.sampling import CallSampler

_log = logging.getLogger("otel_scope")

_CALL_KEY = otel_context.create_key("otel_scope.call")


class _CurrentContext:
    """Stands in for OTel's context variable when its runtime context is another implementation."""

    __slots__ = ()

    def get(self) -> Context:
        return otel_context.get_current()


_variable = context_variable()
#: Its ``get()`` is the current context: OTel's context variable itself, so that the read costs
#: no Python-level call (``get_current()`` costs two), or a stand-in.
CURRENT: contextvars.ContextVar[Context] | _CurrentContext = (
    _variable if _variable is not None else _CurrentContext()
)
current_context = CURRENT.get

_NOTHING = object()  # never the current context, never a provider


class Refusal:
    """A context :func:`decide` said no to, and the global provider it said no under.

    A Context is immutable (every change makes a new one), so while the same object is current,
    under the same provider, the answer is still no; the session's fallback context, the only
    other thing the answer depends on, makes :func:`forget_refusal` run whenever it changes.
    Checking costs two identity tests and no call into otel-scope, which lets a rewritten
    function make the check in its entry test, before calling its probe (see
    ``otel_scope.compile_time.rewriter``): that is what a loop of calls under an unsampled parent
    (or with no SDK, or an ``ALWAYS_OFF`` sampler) costs. It keeps the refused Context (and what
    that references) alive until the next refusal: one context, whatever the number of calls.

    Read without a lock. :func:`_remember` writes ``context`` last and re-checks what it decided
    under, so a remembered no is never kept past a change that happened before the call asking;
    a call racing with a change of provider or fallback may go either way, as with OTel's own.
    """

    __slots__ = ("context", "provider")

    def __init__(self) -> None:
        self.context: object = _NOTHING
        self.provider: object = _NOTHING


#: The refusal decide() keeps, shared by every caller; the only one ever written.
REFUSAL = Refusal()
#: One that never matches: what a caller that must not skip its own checks tests instead.
NO_REFUSAL = Refusal()
# Only when the current context is the contextvars one, whose get() returns the very object
# attached; another runtime context could hand out copies.
_REMEMBER_REFUSALS = _variable is not None


def forget_refusal() -> None:
    """Forget the remembered refusal (the session's fallback context changed)."""
    REFUSAL.context = _NOTHING


session_state.fallback_listeners.append(forget_refusal)

# Root and parent policies derived from the SDK sampler (see _classify).
_ALWAYS, _NEVER, _ASK, _FOLLOW = "always", "never", "ask", "follow"


class _TracingState:
    """The resolved tracer and sampler policy; re-resolved when the global provider changes."""

    __slots__ = ("parent_policy", "provider", "root_policy", "tracer")

    def __init__(self) -> None:
        self.provider: Any = None
        self.tracer: Any = None
        self.root_policy = _NEVER
        self.parent_policy = _NEVER


_state = _TracingState()


def _classify(sampler: Any) -> tuple[str, str]:
    """Map an SDK sampler to (root policy, parent policy) so most decisions need no call."""
    from opentelemetry.sdk.trace import sampling

    if sampler is sampling.ALWAYS_ON:
        return _ALWAYS, _ALWAYS
    if sampler is sampling.ALWAYS_OFF:
        return _NEVER, _NEVER
    # Only the SDK's own ParentBased classes: a subclass may decide otherwise in should_sample.
    delegates = (
        parent_based_delegates(sampler)
        if type(sampler) in (sampling.ParentBased, sampling.ParentBasedTraceIdRatio)
        else None
    )
    if delegates is not None:  # read once, not per call
        root, local_sampled, local_not_sampled, remote_sampled, remote_not_sampled = delegates
        root_policy = (
            _ALWAYS if root is sampling.ALWAYS_ON else _NEVER if root is sampling.ALWAYS_OFF else _ASK
        )
        # "Follow the parent's flag" only when all four parent delegates are the defaults
        # (ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON) records under an
        # unsampled remote parent, so it must be asked).
        default = (
            local_sampled is sampling.ALWAYS_ON
            and local_not_sampled is sampling.ALWAYS_OFF
            and remote_sampled is sampling.ALWAYS_ON
            and remote_not_sampled is sampling.ALWAYS_OFF
        )
        return root_policy, _FOLLOW if default else _ASK
    return _ASK, _ASK


def _resolve(provider: Any) -> None:
    """Adopt ``provider`` (the global one); no tracer unless it is an SDK provider."""
    _state.provider = provider
    _state.tracer = None
    # The SDK's class from sys.modules, never an import: an SDK provider means its module is
    # loaded, and at interpreter exit, where a finalizer may still call a traced function, Python
    # has emptied sys.modules and an import raises (the call then runs untraced).
    sdk_provider = getattr(sys.modules.get("opentelemetry.sdk.trace"), "TracerProvider", None)
    if sdk_provider is not None and isinstance(provider, sdk_provider):  # else proxy, no-op or exit
        _state.root_policy, _state.parent_policy = _classify(provider.sampler)
        _state.tracer = provider.get_tracer("otel_scope", __version__)


# What features do with every otel-scope span as it starts and as it ends (message capture hands a
# span the messages waiting for it), in the order they were added: the span core knows none of
# them. Tuples replaced whole, so the hot path reads one global and iterates without a lock.
_starting: tuple[Callable[[Span, str], None], ...] = ()
_ending: tuple[Callable[[Span], None], ...] = ()
_observers_lock = _forksafe.lock()


def observe(
    on_start: Callable[[Span, str], None] | None = None, on_end: Callable[[Span], None] | None = None
) -> None:
    """Call ``on_start(span, name)`` right after each otel-scope span starts (it is not current
    yet) and ``on_end(span)`` right before it ends; each at most once however often added.

    Observers run on the traced call's thread, before and after the user's code: they must be
    cheap and must not raise.
    """
    global _starting, _ending
    with _observers_lock:
        if on_start is not None and on_start not in _starting:
            _starting = (*_starting, on_start)
        if on_end is not None and on_end not in _ending:
            _ending = (*_ending, on_end)


def unobserve(
    on_start: Callable[[Span, str], None] | None = None, on_end: Callable[[Span], None] | None = None
) -> None:
    """Stop calling observers added by :func:`observe`."""
    global _starting, _ending
    with _observers_lock:
        _starting = tuple(f for f in _starting if f != on_start)
        _ending = tuple(f for f in _ending if f != on_end)


# One immutable (trace ID, hex) pair, read and replaced whole: two mutable slots let a thread read
# another thread's ID between the other's two writes (seen on 3.10).
_last_trace: tuple[int, str] = (0, "0" * 32)


def trace_hex(trace_id: int) -> str:
    """32-hex form of ``trace_id`` (``otel_scope.session.id``); the last one is cached since a
    session reuses it for every span and event."""
    global _last_trace
    last = _last_trace
    if last[0] == trace_id:
        return last[1]
    text = format(trace_id, "032x")
    _last_trace = (trace_id, text)
    return text


def decide() -> Context | None:
    """The parent context for a new otel-scope span, or ``None`` if the span would not record.

    Allocates nothing: callers serialize arguments only after this said yes. Honours OTel's
    suppress-instrumentation key, which the export pipeline sets around every export and store
    write, so a target such as ``json:*`` or ``sqlite3:*`` never traces otel-scope's own work.
    A no that follows from the context alone is remembered (:class:`Refusal`), so asking again
    under the same context costs two identity tests.
    """
    ctx = current_context()
    provider = global_provider()  # the one set_tracer_provider() set; None until then
    refused = REFUSAL
    if ctx is refused.context and provider is refused.provider:
        return None
    if provider is not _state.provider:
        _resolve(provider)
    if session_state.kind == "explicit" and session_state.active.get() is None:
        return None  # not remembered: a session can start without the context changing
    fallback = session_state.fallback_context
    parent_ctx = _parent_context(ctx, fallback)
    if parent_ctx is None and _REMEMBER_REFUSALS:
        _remember(ctx, provider, fallback)
    return parent_ctx


def _remember(ctx: Context, provider: Any, fallback: Context | None) -> None:
    """Make ``ctx``, refused under ``provider`` and ``fallback``, the remembered refusal."""
    refused = REFUSAL
    refused.context = _NOTHING  # so that no reader pairs the previous context with this provider
    refused.provider = provider
    refused.context = ctx
    if global_provider() is not provider or session_state.fallback_context is not fallback:
        refused.context = _NOTHING  # changed while this call decided: the no may be stale


def _parent_context(ctx: Context, fallback: Context | None) -> Context | None:
    """:func:`decide` for the current context ``ctx``, from the resolved provider's policies."""
    if _state.tracer is None:
        return None
    if ctx.get(SUPPRESS_INSTRUMENTATION_KEY):  # an exporter, the store or an SDK at work: never traced
        return None
    parent: Any = ctx.get(SPAN_KEY)  # the current Span (Context types its values as object)
    if parent is None and fallback is not None:
        ctx = fallback
        parent = ctx.get(SPAN_KEY)
    parent_sc = parent.get_span_context() if parent is not None else None
    valid: object  # truth values, as the tuple holds them: no bool() on the hot path
    sampled: object
    if parent_sc is None:
        valid = sampled = False
    elif type(parent_sc) is SpanContextType:  # its items, not its properties: see otel_scope._sdk
        valid, sampled = parent_sc[SPAN_CONTEXT_VALID], parent_sc[SPAN_CONTEXT_FLAGS] & 1
    else:
        valid, sampled = parent_sc.is_valid, parent_sc.trace_flags.sampled
    if valid:
        policy = _state.parent_policy
        if policy is _FOLLOW:
            if not sampled:
                return None
        elif policy is _NEVER:
            return None
    elif _state.root_policy is _NEVER:
        return None
    return ctx


def begin(
    name: str,
    attributes: dict[str, Any],
    ctx: Context,
    code: CodeType | None = None,
    owned: bool = False,
    sampler: CallSampler | None = None,
) -> tuple[Span, Token[Context]] | None:
    """Start a span under ``ctx`` (from :func:`decide`) and make it current.

    Adds ``otel_scope.session.id`` (the trace ID) to the span; ``owned=True`` says ``attributes``
    is a fresh dict the caller gives away, so it is extended in place instead of copied. ``code``
    is the code object about to run, for :func:`claim_call_span`. ``sampler``: the function's
    call sampler, whose count of calls left out since its last kept one goes on this span, taken
    only once the span records (if the SDK's sampler says no, the count waits for the next one).
    Returns ``(span, token)`` for :func:`end_call`, or ``None`` if the sampler still said no.
    """
    parent: Any = ctx.get(SPAN_KEY)  # the current Span (Context types its values as object)
    trace_id = parent.get_span_context().trace_id if parent is not None else 0
    if trace_id:
        if owned:
            attributes[semconv.SESSION_ID] = trace_hex(trace_id)
        else:
            attributes = {**attributes, semconv.SESSION_ID: trace_hex(trace_id)}
    span = _state.tracer.start_span(name, context=ctx, attributes=attributes)
    if not span.is_recording():  # the sampler was asked ("ask" policy) and said no
        return None
    if not trace_id:  # a new trace: its ID exists only now
        span.set_attribute(semconv.SESSION_ID, trace_hex(span.get_span_context().trace_id))
    left_out = sampler.take_pending() if sampler is not None else 0
    if left_out:
        set_attributes(span, {semconv.SAMPLED_OUT: left_out})
    for observer in _starting:
        observer(span, name)
    new_ctx = trace.set_span_in_context(span, ctx)
    if code is not None:
        new_ctx = otel_context.set_value(_CALL_KEY, [code, span], new_ctx)
    return span, otel_context.attach(new_ctx)


def end_call(span: Span, token: object) -> None:
    """Detach the call's context and end its span; never raises into the user's program."""
    try:
        otel_context.detach(token)  # type: ignore[arg-type]
    except Exception:  # a generator resumed in another context; the span still ends
        pass
    end_span(span)


def end_span(span: Span, end_time: int | None = None) -> None:
    """End an otel-scope span (at ``end_time``, else now), after the observers' ``on_end``."""
    for observer in _ending:
        observer(span)
    span.end(end_time)


def claim_call_span(depth: int = 2) -> Span | None:
    """The span a runtime wrapper opened for the running call, if it was not claimed yet.

    Called by compile-time instrumentation at function entry. ``depth`` is the number of frames
    between the caller of this function and the instrumented function's frame (2 means: the
    instrumented function called a helper which called this).
    """
    marker: Any = current_context().get(_CALL_KEY)  # [code, span] from begin(), or None
    if marker is None or marker[0] is None:
        return None
    if marker[0] is not sys._getframe(depth).f_code:
        return None
    marker[0] = None  # claimed: a recursive call of the same function opens its own span
    claimed: Span = marker[1]
    return claimed


# Objects that keep a running call's state in a frame of the call (the compile-time recorder's
# call, in the rewritten function's frame), each with what records that call as unfinished.
_holders: dict[type, Callable[[Any, str], Span | None]] = {}


def holds_calls(kind: type, abandon: Callable[[Any, str], Span | None]) -> None:
    """Objects of ``kind`` found in a frame stand for a running call whose span is their
    ``span`` attribute: at an abrupt exit ``abandon(obj, how)`` records what the call has so far
    and returns the span to end as unfinished, or None if the span is another's (then ended
    where it was opened)."""
    _holders[kind] = abandon


def end_unfinished(how: str, since_ns: int = 0) -> int:
    """End, as unfinished, every otel-scope span of a call still running as the process ends
    abruptly (``how``: ``os._exit(3)``, ``signal SIGTERM``) that started at ``since_ns`` or
    later; how many were ended.

    OpenTelemetry exports only ended spans, so a call the process leaves inside (a worker that
    calls ``os._exit`` in a traced function, SIGTERM in the middle of a request) was lost with
    nothing to say so, and its child spans became orphans. Each gets ``otel_scope.unfinished``
    and ends now (all at one instant, so no call ends before one it made), with its arguments
    and what it recorded so far: the process ending is when the call stopped. Nothing is paid
    for this on the traced calls: their spans are found at exit in the frames that hold them
    (every thread's stack, and the coroutines of the tasks of this thread's event loop). A
    generator suspended between two items is held by no frame, and is not found. A forked
    child's stack still holds the calls its parent was in at the fork (``Process.start()``
    inside a traced function): those are the parent's to end, hence ``since_ns``, the fork.
    """
    found: dict[int, Span] = {}
    try:
        for frame in _live_frames():
            try:
                values = list(frame.f_locals.values())
            except Exception:
                continue
            for value in values:
                try:
                    span = _open_span(value, how, since_ns)
                except Exception:  # one call's failure: the others are still ended
                    _log.debug("otel-scope could not end an unfinished call", exc_info=True)
                    continue
                if span is not None:
                    found.setdefault(id(span), span)
    except Exception:  # the process is ending: end what was found
        _log.debug("otel-scope could not find every unfinished call", exc_info=True)
    at = time.time_ns()
    for span in found.values():
        with contextlib.suppress(Exception):
            span.set_attribute(semconv.UNFINISHED, how)
            end_span(span, at)  # no detach: the context it was attached in is the running call's
    return len(found)


def _open_span(value: Any, how: str, since_ns: int) -> Span | None:
    """The otel-scope span of a call running in this process that ``value``, a frame's local,
    holds, if any."""
    abandon = _holders.get(type(value))
    span = value.span if abandon is not None else value
    # By the value's own type: isinstance() would read __class__, which a lazy proxy among the
    # user's locals answers by running the program's code.
    if not issubclass(type(span), Span) or not span.is_recording():
        return None
    if (getattr(span, "start_time", None) or 0) < since_ns:  # started before the fork: the parent's
        return None
    if abandon is not None:
        return abandon(value, how)
    attributes = getattr(span, "attributes", None) or ()
    return span if semconv.MECHANISM in attributes else None  # else another tool's span


def _live_frames() -> Iterator[FrameType]:
    """Every frame of every thread's stack, then those of the coroutines the tasks of the
    calling thread's event loop have suspended (read through their types' own attributes)."""
    for top in list(sys._current_frames().values()):
        frame: FrameType | None = top
        while frame is not None:
            yield frame
            frame = frame.f_back
    asyncio = sys.modules.get("asyncio")
    if asyncio is None or (loop := asyncio._get_running_loop()) is None:
        return
    for task in list(asyncio.all_tasks(loop)):
        chain: Any = task.get_coro()
        while type(chain) in (CoroutineType, GeneratorType):
            if type(chain) is CoroutineType:
                frame, chain = chain.cr_frame, chain.cr_await
            else:
                frame, chain = chain.gi_frame, chain.gi_yieldfrom
            if frame is not None:
                yield frame


session_state.unfinished_enders.append(end_unfinished)
