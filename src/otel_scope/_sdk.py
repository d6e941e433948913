"""Every private name of the OpenTelemetry API and SDK that otel-scope relies on, in one module.

otel-scope reads a few internals where the public API costs on every traced call (the global
provider without its proxy, the current context without a copy, events without per-attribute
validation) or cannot say what is needed (a ``ParentBased`` sampler's delegates). Keeping them
here means an SDK release that moves one breaks this module only, and
``tests/test_sdk_contract.py`` checks each against the installed SDK, naming the one that moved.
Where a public way exists, it is the fallback when the private name is missing.
"""

from __future__ import annotations

import contextvars
import copy
import types
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as _context
from opentelemetry import trace as _trace
from opentelemetry.attributes import BoundedAttributes

# The context keys the API itself uses for "the current span" and for "instrumentation
# suppressed" (every contrib instrumentation honours the second). Both are module-private.
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY as SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.context import Context
from opentelemetry.trace.propagation import _SPAN_KEY as SPAN_KEY

if TYPE_CHECKING:
    from opentelemetry.sdk._configuration import _OTelSDKConfigurator as SDKConfigurator

# The SDK's span, event and event-list classes, for append_deferred_events (private: may move),
# loaded on its first call: the SDK is loaded by then if the span is one of its own, and readers
# of the local store (every otel-scope command) never load it. All three in one import: at
# interpreter exit (a finalizer calling a rewritten function) an import may fail, and then none
# is used.
_span_classes: tuple[Any, Any, Any] | None = None


def _load_span_classes() -> tuple[Any, Any, Any]:
    global _span_classes
    try:
        from opentelemetry.sdk.trace import Event, _Span
        from opentelemetry.sdk.util import BoundedList

        _span_classes = (_Span, Event, BoundedList)
    except ImportError:  # pragma: no cover - another SDK, or Python shutting down: add_event is used
        _span_classes = (None, None, None)
    return _span_classes


__all__ = [
    "PROVIDER_GLOBAL",
    "SPAN_KEY",
    "SUPPRESS_INSTRUMENTATION_KEY",
    "SDKConfigurator",
    "append_deferred_events",
    "attributes_mapping",
    "context_variable",
    "entry_points",
    "global_provider",
    "parent_based_delegates",
    "provider_namespace",
    "set_attributes",
    "set_global_provider",
]


def __getattr__(name: str) -> Any:
    """``SDKConfigurator`` (the SDK's configurator class) on first use: its module imports the
    whole metrics SDK (about 100 ms), which only the distro needs."""
    if name == "SDKConfigurator":
        from opentelemetry.sdk._configuration import _OTelSDKConfigurator

        return _OTelSDKConfigurator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def entry_points(**selection: str) -> Any:
    """``importlib.metadata.entry_points(**selection)``, from the API's cached copy.

    The standard library reads every installed distribution's metadata on each call (about
    5 ms here, with 250 distributions); the stock CLI has already filled the API's cache by the
    time the distro runs, so reading it there costs nothing.
    """
    try:
        from opentelemetry.util._importlib_metadata import entry_points as cached
    except ImportError:  # pragma: no cover - an API release without it
        import importlib.metadata

        return importlib.metadata.entry_points(**selection)
    return cached(**selection)


def global_provider() -> Any:
    """The provider ``set_tracer_provider`` installed, or ``None`` before that.

    ``trace.get_tracer_provider()`` returns a proxy until then, and building it is not free; the
    span core compares this with the provider it resolved on every call.
    """
    return _trace._TRACER_PROVIDER


# The name of the API trace module's global that holds the provider set_tracer_provider() set.
# Rewritten functions read it as an attribute of provider_namespace() in their entry test: an
# attribute read costs no call (see otel_scope.runtime.tracing.Refusal).
PROVIDER_GLOBAL: Final = "_TRACER_PROVIDER"


def provider_namespace() -> Any:
    """The object whose :data:`PROVIDER_GLOBAL` attribute is the global provider: the API's trace
    module, or, should a release rename that global, a stand-in whose attribute is never a
    provider (the entry test then never skips, and nothing raises in the user's function)."""
    if hasattr(_trace, PROVIDER_GLOBAL):
        return _trace
    return types.SimpleNamespace(**{PROVIDER_GLOBAL: object()})  # pragma: no cover - another API


def set_global_provider(provider: Any) -> None:
    """Replace the global provider (tests and benchmarks: ``set_tracer_provider`` allows one)."""
    _trace._TRACER_PROVIDER = provider


def context_variable() -> contextvars.ContextVar[Context] | None:
    """The context variable holding the current context, or ``None`` if OTel's runtime context is
    not the contextvars one (``OTEL_PYTHON_CONTEXT`` names another implementation)."""
    runtime = getattr(_context, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    return var if isinstance(var, contextvars.ContextVar) else None


# The API's SpanContext is a tuple whose items back its properties: ``trace_flags`` is item 3 and
# ``is_valid`` item 5, computed once at construction. Reading the items directly costs a tenth
# of the properties (``trace_flags.sampled`` alone is ~150 ns), on every call deciding whether to
# record. Only for the API's own class (``type(sc) is SpanContext``), never for a subclass.
SpanContextType = _trace.SpanContext
SPAN_CONTEXT_FLAGS: Final = 3
SPAN_CONTEXT_VALID: Final = 5


def sampled_flag(span_context: Any) -> bool:
    """``span_context.trace_flags.sampled``, without the two property lookups where it can."""
    if type(span_context) is SpanContextType:
        return bool(span_context[SPAN_CONTEXT_FLAGS] & 1)
    return bool(span_context.trace_flags.sampled)


def parent_based_delegates(sampler: Any) -> tuple[Any, Any, Any, Any, Any] | None:
    """A ``ParentBased`` sampler's root and four parent delegates, or ``None`` if not readable.

    In the order root, local parent sampled, local parent not sampled, remote parent sampled,
    remote parent not sampled. The SDK keeps them as private attributes and has no getter.
    """
    try:
        return (
            sampler._root,
            sampler._local_parent_sampled,
            sampler._local_parent_not_sampled,
            sampler._remote_parent_sampled,
            sampler._remote_parent_not_sampled,
        )
    except AttributeError:
        return None


def append_deferred_events(span: Any, build: Callable[[], Sequence[tuple[str, dict[str, Any], int]]]) -> bool:
    """Append a batch of events to a live SDK span; ``build()`` makes them, as ``(name,
    attributes, time_ns)``, when the span's events are first read.

    Making an event (its attributes dict, a safe repr per value, the SDK ``Event`` object) is
    most of what it costs the call that records it. Deferred, it is paid by the first reader
    instead: the export thread (see :mod:`otel_scope.pipeline`), or a synchronous processor's
    ``on_end``. The call pays one list append: the span's event list becomes a
    ``DeferredEvents`` (see :func:`_load_deferred_list_class`), which keeps the batch in order
    with events added after it, and builds it, under the list's own lock, exactly once.
    ``build`` must never raise, and may only hold values that stay as they are (immutable ones,
    or text already rendered): it runs later.

    Returns ``False`` (nothing done) for any other span or an ended one: the caller then uses
    ``add_event``. Skips the SDK's per-event attribute validation, so ``build`` gives only
    bounded strings and numbers.
    """
    span_class = (_span_classes or _load_span_classes())[0]
    if type(span) is not span_class:
        return False
    deferred_class = _deferred_list_class or _load_deferred_list_class()
    with span._lock:
        if span._end_time is not None:
            return False
        events = span._events
        if type(events) is deferred_class:
            events.defer(build)
        elif type(events) is deferred_class.__base__:
            span._events = deferred_class.adopt(events, build)
        else:
            return False
    return True


_deferred_list_class: Any = None


def _load_deferred_list_class() -> Any:
    """The SDK ``BoundedList`` subclass a span's events become (see :func:`append_deferred_events`),
    made on first use as the SDK's classes are loaded. Every read of it (iteration, length,
    indexing, the dropped count, a deep copy) builds the pending batches first, so it reads as
    the list of the same events added one by one would, limit and dropped count included;
    ``tests/test_sdk_contract.py`` checks that."""
    global _deferred_list_class
    _span, event_class, BoundedList = _span_classes or _load_span_classes()

    class DeferredEvents(BoundedList):  # type: ignore[misc,valid-type]
        _dq: deque[Any]
        _lock: Any
        _dropped: int
        _pending: list[Any]  # batches (callables) and the events added after the first one

        @classmethod
        def adopt(
            cls, events: Any, build: Callable[[], Sequence[tuple[str, dict[str, Any], int]]]
        ) -> DeferredEvents:
            """A deferred list holding what ``events`` holds, its lock and dropped count, then the
            batch ``build`` makes (no lock taken: no one else sees the new list yet)."""
            made: DeferredEvents = object.__new__(cls)
            made._dq, made._lock, made._dropped, made._pending = (
                events._dq,
                events._lock,
                events.dropped,
                [build],
            )
            return made

        def defer(self, build: Callable[[], Sequence[tuple[str, dict[str, Any], int]]]) -> None:
            with self._lock:
                self._pending.append(build)

        @property
        def dropped(self) -> int:
            with self._lock:
                self._settle()
                return self._dropped

        @dropped.setter
        def dropped(self, count: int) -> None:
            self._dropped = count

        def _settle(self) -> None:
            """Build the pending batches into the list, in order (the caller holds the lock)."""
            pending = self._pending
            if not pending:
                return
            self._pending = []
            new = object.__new__
            for item in pending:
                if not callable(item):  # an event added after the batch
                    self._add((item,))
                    continue
                made = []
                for name, attributes, when in item():
                    event = new(event_class)
                    event._name, event._attributes, event._timestamp = name, attributes, when
                    made.append(event)
                self._add(made)

        def _add(self, items: Sequence[Any]) -> None:
            dq = self._dq
            if dq.maxlen is not None:
                self._dropped += max(0, len(items) + len(dq) - dq.maxlen)
            dq.extend(items)

        def __getitem__(self, index: Any) -> Any:
            with self._lock:
                self._settle()
                return self._dq[index]

        def __len__(self) -> int:
            with self._lock:
                self._settle()
                return len(self._dq)

        def __iter__(self) -> Any:
            with self._lock:
                self._settle()
                return iter(list(self._dq))

        def __repr__(self) -> str:
            with self._lock:
                self._settle()
            return super().__repr__()  # type: ignore[no-any-return]

        def __deepcopy__(self, memo: dict[int, Any]) -> Any:
            copied = BoundedList(self._dq.maxlen)  # the base class's copy reads dropped locked
            memo[id(self)] = copied
            with self._lock:
                self._settle()
                copied.dropped = self._dropped
                copied._dq = copy.deepcopy(self._dq, memo)
            return copied

        def append(self, item: Any) -> None:
            with self._lock:
                if self._pending:
                    self._pending.append(item)
                else:
                    self._add((item,))

        def extend(self, seq: Sequence[Any]) -> None:
            with self._lock:
                if self._pending:
                    self._pending.extend(seq)
                else:
                    self._add(tuple(seq))

    _deferred_list_class = DeferredEvents
    return DeferredEvents


def set_attributes(span: Any, attributes: dict[str, Any]) -> None:
    """``span.set_attributes(attributes)``, without the SDK's per-attribute validation when that
    cannot change anything: a live SDK span, values otel-scope made (bounded strings, ints and
    bools), no value-length limit to apply, room for every key, and no key set already.

    The validation (a lock, a type walk and a copy per attribute) is a tenth of what a
    compile-time call costs at level ``boundaries``. Any other case goes through the SDK.
    """
    span_class = (_span_classes or _load_span_classes())[0]
    if type(span) is span_class:
        bounded = span._attributes
        if type(bounded) is BoundedAttributes and bounded.max_value_len is None:
            inner = bounded._dict
            maxlen = bounded.maxlen
            with span._lock:
                if (
                    span._end_time is None
                    and (maxlen is None or len(inner) + len(attributes) <= maxlen)
                    and inner.keys().isdisjoint(attributes)
                ):
                    inner.update(attributes)
                    return
    span.set_attributes(attributes)


def attributes_mapping(attributes: Mapping[str, Any]) -> Mapping[str, Any]:
    """``attributes`` as a mapping read without the ``Mapping`` mixin's per-key lookups.

    The SDK's ``BoundedAttributes`` (an event's attributes, a resource's) keeps a plain dict;
    reading it directly is six times faster, which matters to the store writing every event of
    every span. For ended spans (immutable attributes) only: the dict is read without the SDK's
    lock.
    """
    if type(attributes) is BoundedAttributes:
        inner = getattr(attributes, "_dict", None)
        if type(inner) is dict:
            return inner
    return attributes
