"""The OpenTelemetry internals otel-scope reads (``otel_scope._sdk``) still mean what it assumes.

Each test checks one private name against the public behaviour it stands for, on the installed
API and SDK, so an upgrade that moves one fails here, by name, instead of somewhere downstream.
"""

from __future__ import annotations

import copy

from opentelemetry import context, trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.sdk._configuration import _BaseConfigurator
from opentelemetry.sdk.trace import Event, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, TraceIdRatioBased

from otel_scope import _sdk


def test_span_key_is_the_key_the_api_stores_the_current_span_under() -> None:
    span = trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)
    assert trace.set_span_in_context(span).get(_sdk.SPAN_KEY) is span


def test_suppress_key_is_the_one_instrumentations_honour() -> None:
    token = context.attach(context.set_value(_sdk.SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        assert not is_instrumentation_enabled()
    finally:
        context.detach(token)
    assert is_instrumentation_enabled()


def test_global_provider_is_what_get_tracer_provider_returns_once_set() -> None:
    previous = _sdk.global_provider()
    provider = TracerProvider()
    _sdk.set_global_provider(provider)
    try:
        assert trace.get_tracer_provider() is provider
        assert _sdk.global_provider() is provider
    finally:
        _sdk.set_global_provider(previous)


def test_the_provider_global_read_by_rewritten_code_is_the_one_set_tracer_provider_sets() -> None:
    namespace = _sdk.provider_namespace()
    assert namespace is trace, "a stand-in: the API renamed its provider global"
    previous = _sdk.global_provider()
    provider = TracerProvider()
    try:
        _sdk.set_global_provider(provider)
        assert getattr(namespace, _sdk.PROVIDER_GLOBAL) is provider
    finally:
        _sdk.set_global_provider(previous)


def test_the_context_variable_holds_the_attached_context_itself() -> None:
    var = _sdk.context_variable()
    assert var is not None, "OTel's runtime context is no longer the contextvars one"
    ctx = context.set_value("otel-scope-contract", 2)
    token = context.attach(ctx)
    try:
        assert var.get() is ctx  # the very object: what remembering a refusal relies on
    finally:
        context.detach(token)


def test_parent_based_delegates_are_the_ones_given_to_the_constructor() -> None:
    ratio = TraceIdRatioBased(0.5)
    sampler = ParentBased(ratio, remote_parent_sampled=ALWAYS_OFF, local_parent_not_sampled=ALWAYS_ON)
    assert _sdk.parent_based_delegates(sampler) == (ratio, ALWAYS_ON, ALWAYS_ON, ALWAYS_OFF, ALWAYS_OFF)
    assert _sdk.parent_based_delegates(ALWAYS_ON) is None


def test_deferred_events_are_added_to_a_live_sdk_span_only() -> None:
    span = TracerProvider().get_tracer("contract").start_span("call")
    assert _sdk.append_deferred_events(span, lambda: [("first", {"k": "v"}, 10), ("second", {}, 20)])
    assert [(e.name, dict(e.attributes or {}), e.timestamp) for e in span.events] == [
        ("first", {"k": "v"}, 10),
        ("second", {}, 20),
    ]
    span.end()
    assert not _sdk.append_deferred_events(span, lambda: [("late", {}, 30)])
    assert len(span.events) == 2
    invalid = trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)
    assert not _sdk.append_deferred_events(invalid, lambda: [("x", {}, 1)])


def test_deferred_events_read_as_the_sdk_constructors_events_do() -> None:
    """What exporters read of an event: its name, time, attributes and dropped count."""
    span = TracerProvider().get_tracer("contract").start_span("call")
    assert _sdk.append_deferred_events(span, lambda: [("first", {"k": "v"}, 10)])
    built, made = span.events[0], Event("first", {"k": "v"}, 10)
    assert type(built) is Event
    assert (built.name, built.timestamp, built.attributes, built.dropped_attributes) == (
        made.name,
        made.timestamp,
        made.attributes,
        made.dropped_attributes,
    )
    span.end()
    exported = span.to_json()  # the console exporter's form: every field read through the SDK
    assert '"k": "v"' in exported and '"first"' in exported


def test_deferred_events_keep_their_order_limit_and_dropped_count_as_added_ones_do() -> None:
    """Batches and events added one by one around them read as if all had been added in order,
    through every way the SDK, exporters and a deep copy read a span's events."""
    tracer = TracerProvider(span_limits=SpanLimits(max_events=4)).get_tracer("contract")
    ours, sdk = tracer.start_span("ours"), tracer.start_span("sdk")
    ours.add_event("before", {}, 1)
    assert _sdk.append_deferred_events(ours, lambda: [("a", {}, 2), ("b", {}, 3)])
    ours.add_event("between", {}, 4)
    assert _sdk.append_deferred_events(ours, lambda: [("c", {}, 5), ("d", {}, 6)])
    for name, when in (("before", 1), ("a", 2), ("b", 3), ("between", 4), ("c", 5), ("d", 6)):
        sdk.add_event(name, {}, when)
    ours.end()
    sdk.end()
    assert [(e.name, e.timestamp) for e in ours.events] == [(e.name, e.timestamp) for e in sdk.events]
    assert [e.name for e in ours.events] == ["b", "between", "c", "d"]
    assert ours.dropped_events == sdk.dropped_events == 2
    assert len(ours._events) == 4 and ours._events[-1].name == "d"  # type: ignore[attr-defined]
    copied = copy.deepcopy(ours._events)  # type: ignore[attr-defined]
    assert [e.name for e in copied] == ["b", "between", "c", "d"] and copied.dropped == 2


def test_deferred_events_are_built_once_when_first_read() -> None:
    builds: list[int] = []

    def build() -> list[tuple[str, dict[str, str], int]]:
        builds.append(1)
        return [("a", {"n": "1"}, 1), ("b", {"n": "2"}, 2)]

    span = TracerProvider().get_tracer("contract").start_span("call")
    assert _sdk.append_deferred_events(span, build)
    span.end()
    assert builds == []  # adding and ending cost no build
    events = span.events
    assert [e.attributes for e in events] == [{"n": "1"}, {"n": "2"}]
    assert [e.attributes for e in reversed(span.events)] == [{"n": "2"}, {"n": "1"}]
    assert span.dropped_events == 0
    assert builds == [1]


def test_set_attributes_gives_what_the_sdk_gives_and_respects_its_limits() -> None:
    def both(limits: SpanLimits, start: dict[str, object], added: dict[str, object]) -> None:
        tracer = TracerProvider(span_limits=limits).get_tracer("contract")
        ours, sdk = tracer.start_span("ours", attributes=start), tracer.start_span("sdk", attributes=start)
        _sdk.set_attributes(ours, added)
        sdk.set_attributes(added)
        assert list((ours.attributes or {}).items()) == list((sdk.attributes or {}).items())  # order too
        assert ours.dropped_attributes == sdk.dropped_attributes
        ours.end()
        _sdk.set_attributes(ours, {"late": 1})  # an ended span is left alone, as by the SDK
        assert "late" not in (ours.attributes or {})

    added = {"otel_scope.return": "'x'", "otel_scope.captures.recorded": 3, "flag": True}
    both(SpanLimits(), {"a": 1}, added)
    both(SpanLimits(max_attributes=2), {"a": 1}, added)  # no room: the SDK drops the oldest
    both(SpanLimits(max_attribute_length=2), {"a": 1}, added)  # the SDK cuts values
    both(SpanLimits(), {"otel_scope.return": "old", "b": 2}, added)  # a key set already moves last


def test_attributes_mapping_reads_bounded_attributes_whole() -> None:
    span = TracerProvider().get_tracer("contract").start_span("call")
    span.add_event("event", {"a": 1, "b": ("x", "y")})
    span.end()
    for attributes in (span.events[0].attributes, span.resource.attributes):
        assert attributes is not None
        assert type(getattr(attributes, "_dict", None)) is dict  # else the fast path is never taken
        assert dict(_sdk.attributes_mapping(attributes)) == dict(attributes)
    assert dict(_sdk.attributes_mapping(span.events[0].attributes or {})) == {"a": 1, "b": ("x", "y")}
    assert dict(_sdk.attributes_mapping({"plain": 2})) == {"plain": 2}


def test_entry_points_come_from_the_apis_cache_and_select_as_the_standard_library_does() -> None:
    from opentelemetry.util import _importlib_metadata

    assert hasattr(_importlib_metadata, "entry_points")
    ours = {(e.name, e.value) for e in _sdk.entry_points(group="opentelemetry_configurator")}
    assert ("otel_scope", "otel_scope.distro.configurator:ScopeConfigurator") in ours
    assert [e.name for e in _sdk.entry_points(group="opentelemetry_traces_exporter", name="otel_scope")] == [
        "otel_scope"
    ]


def test_sdk_configurator_is_the_sdks_own_configurator() -> None:
    assert issubclass(_sdk.SDKConfigurator, _BaseConfigurator)
    assert _sdk.SDKConfigurator.__module__ == "opentelemetry.sdk._configuration"


def test_span_context_items_are_the_flags_and_validity_its_properties_read() -> None:
    for trace_id, span_id, flags in [
        (0x1234, 0x5678, 1),
        (0x1234, 0x5678, 0),
        (0, 0x5678, 1),
        (0x1234, 0, 0),
    ]:
        sc = trace.SpanContext(trace_id, span_id, is_remote=False, trace_flags=trace.TraceFlags(flags))
        assert type(sc) is _sdk.SpanContextType
        assert sc[_sdk.SPAN_CONTEXT_VALID] == sc.is_valid
        assert sc[_sdk.SPAN_CONTEXT_FLAGS] == sc.trace_flags
        assert _sdk.sampled_flag(sc) == sc.trace_flags.sampled
    assert not trace.INVALID_SPAN_CONTEXT[_sdk.SPAN_CONTEXT_VALID]
