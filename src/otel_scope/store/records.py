"""The source-independent trace model every reader produces and every writer and renderer consumes.

Jaeger, Tempo, trace files and the local store all describe the same OpenTelemetry data in
different shapes (hex or base64 IDs, nanoseconds or microseconds, tags or attributes). Each
source converts to these plain records once, so the renderer and the file writers deal with one
shape only. IDs are always lower-case hex (32 digits for traces, 16 for spans), times are
nanoseconds since the Unix epoch, and attribute values are JSON-compatible Python values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The OTel span kinds and status codes, by name; their index is the OTLP enum value minus one
# for kinds (0 is "unspecified") and the enum value itself for status codes.
SPAN_KINDS = ("INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
STATUS_CODES = ("UNSET", "OK", "ERROR")


@dataclass
class EventRecord:
    """One span event (an OTel "event", a Jaeger "log")."""

    name: str
    time_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class LinkRecord:
    """A link from a span to another span, possibly in another trace."""

    trace_id: str
    span_id: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class SpanRecord:
    """One finished span with everything otel-scope shows or writes back out."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str = "INTERNAL"
    start_ns: int = 0
    end_ns: int = 0
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[EventRecord] = field(default_factory=list)
    links: list[LinkRecord] = field(default_factory=list)
    status_code: str = "UNSET"
    status_message: str = ""
    resource: dict[str, Any] = field(default_factory=dict)
    # Events the SDK discarded at its per-span limit (it keeps the newest): the timeline is
    # incomplete at the start of this span when this is non-zero.
    dropped_events_count: int = 0

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)

    @property
    def service_name(self) -> str:
        return str(self.resource.get("service.name", ""))


@dataclass
class TraceData:
    """All spans of one trace, in start-time order.

    ``warnings`` carries what a backend said about the answer (Tempo's "PARTIAL" status, Jaeger's
    trace warnings) so the renderer can show that the timeline may be incomplete.
    """

    trace_id: str
    spans: list[SpanRecord]
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.spans.sort(key=lambda s: (s.start_ns, s.end_ns))

    @property
    def start_ns(self) -> int:
        return min((s.start_ns for s in self.spans), default=0)

    @property
    def end_ns(self) -> int:
        return max((s.end_ns for s in self.spans), default=0)

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)

    def roots(self) -> list[SpanRecord]:
        """Spans whose parent is not in this trace (normally one root, more if data is missing)."""
        ids = {s.span_id for s in self.spans}
        return [s for s in self.spans if not s.parent_span_id or s.parent_span_id not in ids]


@dataclass
class TraceStats:
    """What a trace's header and summary say, computed without holding its spans.

    Readers of big traces fill this from one aggregate query; a trace in memory from its spans.
    """

    trace_id: str
    span_count: int = 0
    start_ns: int = 0
    end_ns: int = 0
    errors: int = 0
    by_mechanism: dict[str, int] = field(default_factory=dict)
    services: list[str] = field(default_factory=list)
    session_name: str | None = None
    dropped_captures: int = 0
    dropped_reasons: list[str] = field(default_factory=list)
    sdk_dropped_events: int = 0
    # spans the export pipeline lost, as the session spans (the parent's and forked children's) say
    dropped_spans: int = 0
    dropped_span_reasons: list[str] = field(default_factory=list)
    # calls call sampling left out, as the session spans say: in all, of how many calls of
    # sampled functions, and per function (the functions with most left out, by name)
    sampled_out: int = 0
    sampled_calls: int = 0
    sampled_out_by_function: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)


@dataclass(frozen=True)
class FunctionStats:
    """One function's line in the summary: calls, time in it and below it, time in it alone."""

    function: str
    calls: int
    total_ns: int
    self_ns: int
    errors: int


def as_count(value: Any) -> int:
    """A count attribute as a non-negative int: read back from files or other tools, it may
    arrive as a string, or as nonsense."""
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True)
class SessionSummary:
    """One row of ``otel-scope sessions``: a trace, described without loading its spans."""

    trace_id: str
    root_name: str
    session_name: str | None
    service_name: str | None
    start_ns: int
    duration_ns: int
    span_count: int
    error_count: int
    has_runtime: bool
    has_compile_time: bool
