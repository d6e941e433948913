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
import types
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

# The SDK's span and event classes, for append_deferred_events (private: may move), loaded on
# its first call: the SDK is loaded by then if the span is one of its own, and readers of the
# local store (every otel-scope command) never load it.
_span_classes: tuple[Any, Any] | None = None


def _load_span_classes() -> tuple[Any, Any]:
    global _span_classes
    try:
        from opentelemetry.sdk.trace import Event, _Span

        _span_classes = (_Span, Event)
    except ImportError:  # pragma: no cover - another SDK: no deferred events, add_event is used
        _span_classes = (None, None)
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


def append_deferred_events(
    span: Any, events: Sequence[tuple[str, int]], build: Callable[[], Sequence[dict[str, Any]]]
) -> bool:
    """Append ``(name, time_ns)`` events to a live SDK span in one locked ``extend``; their
    attributes are ``build()``'s dicts, in the same order, made when one of them is first read.

    Building an event's attributes (a dict, a safe repr per value) is most of what an event
    costs the call that records it. Deferred, it is paid by the first reader instead: the export
    thread (see :mod:`otel_scope.pipeline`), or a synchronous processor's ``on_end``. ``build``
    runs at most once per batch (a second thread reading meanwhile may run it too: it must
    give the same result and never raise), and is dropped once it has run. It may only hold
    values that stay as they are (immutable ones, or text already rendered): it runs later.

    Returns ``False`` (nothing done) for any other span or an ended one: the caller then uses
    ``add_event``. Skips the SDK's per-event attribute validation, so ``build`` gives only
    bounded strings and numbers.
    """
    span_class, event_class = _span_classes or _load_span_classes()
    if type(span) is not span_class or span._end_time is not None:
        return False
    deferred_class = _deferred_event_class or _load_deferred_event_class(event_class)
    source = _Deferred(build)
    new = object.__new__
    made = []
    for index, (name, when) in enumerate(events):
        event = new(deferred_class)
        event._name = name
        event._timestamp = when
        event._source = source
        event._index = index
        made.append(event)
    recorded: Any = span._events  # a BoundedList; typed as the read-only Sequence it exposes
    recorded.extend(made)
    return True


class _Deferred:
    """The attributes of one batch of deferred events: built once, by the first reader."""

    __slots__ = ("_build", "_built")

    def __init__(self, build: Callable[[], Sequence[dict[str, Any]]]) -> None:
        self._build: Callable[[], Sequence[dict[str, Any]]] | None = build
        self._built: Sequence[dict[str, Any]] | None = None

    def get(self, index: int) -> dict[str, Any]:
        built = self._built
        if built is None:
            build = self._build
            if build is None:  # another thread built them meanwhile (it sets _built first)
                built = self._built
                assert built is not None
            else:
                built = self._built = build()
                self._build = None  # what it held (the call's captures) can go
        return built[index]


_deferred_event_class: Any = None


def _load_deferred_event_class(event_class: Any) -> Any:
    """The SDK ``Event`` subclass :func:`append_deferred_events` makes: made on first use, as
    the SDK's own classes are loaded. ``tests/test_sdk_contract.py`` checks that it reads as the
    constructor's events do."""
    global _deferred_event_class

    class DeferredEvent(event_class):  # type: ignore[misc]
        __slots__ = ("_index", "_source")

        @property
        def _attributes(self) -> dict[str, Any]:  # what Event.attributes and exporters read
            return self._source.get(self._index)  # type: ignore[no-any-return]

    _deferred_event_class = DeferredEvent
    return DeferredEvent


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
