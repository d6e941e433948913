"""Runtime support for rewritten functions: probes, per-call recorders, and the event budget.

Each instrumented function has one :class:`Probe`, a constant of its code (see :func:`bind`). On
entry the function asks ``probe.enter(call)`` for a :class:`CallRecorder`; ``None`` (capture off,
rate limited, span sampled out, no SDK) makes it run its original, untouched body, so a call
that records nothing costs one attribute read when capture is off, a few more and no call into
otel-scope under a context the span core refused already (see :class:`Probe`), one C call when
its call sampler leaves it out (the probe's ``gate``, see :mod:`otel_scope.capture.sampling`),
and one method call otherwise.

A recorder is a local variable of the call, so events belong to the right call whatever the
threads, tasks or generator suspensions in between. Captures are cheap on purpose: a capture
stores ``(sequence, time, point, hit, values)`` in a list, keeping immutable scalars and short
text as they are and serializing anything else at once (so a later mutation cannot change what
was seen, and a span never holds a large value).
When the call ends, :meth:`CallRecorder.__exit__` turns what it kept into span events in one go.

**Event budget.** The SDK keeps only the *last* 128 events of a span. So that a loop never
silently loses its first iterations, each capture point keeps its first ``loop_sample`` hits and
a ring of its last ``loop_sample`` hits; the hits in between are counted, not kept. Past
``16 * loop_sample`` hits a point is thinned (see :meth:`CallRecorder._hit`) before its values
are rendered, so one recorded call of a long loop or generator costs a bounded amount. If the kept
events still exceed ``max_events``, the earliest half and the latest half of the budget are
emitted and the middle is counted. Counts and reasons go on the span
(``otel_scope.captures.recorded``, ``.dropped``, ``.dropped_reason``).

Nothing here may raise into the user's program: every entry point catches its own errors, and
the first error disables compile-time capture for the process with one warning.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from time import time_ns
from types import CodeType
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context

from otel_scope import semconv as sc
from otel_scope._sdk import append_deferred_events, provider_namespace, set_attributes
from otel_scope.capture import sampling
from otel_scope.capture.exceptions import cancelled, record_call_end
from otel_scope.compile_time.spec import (
    DELETE,
    EXPRESSION,
    LINE,
    LOCALS,
    PLACEHOLDER,
    RETURN,
    FunctionSpec,
    SpecData,
)
from otel_scope.config.patterns import PatternError, parse_pattern
from otel_scope.runtime.tracing import (
    CURRENT,
    NO_REFUSAL,
    REFUSAL,
    begin,
    claim_call_span,
    decide,
    end_call,
    end_span,
    holds_calls,
    trace_hex,
)

if TYPE_CHECKING:
    from otel_scope.capture import Serializer

_log = logging.getLogger("otel_scope")

# Values kept as they are until the call ends: immutable, and cheap to serialize later. Text
# (str, bytes) too, up to the serializer's max length: longer text is rendered as it is captured,
# so that what a span holds for its export stays bounded (see CallRecorder.v).
_SCALARS = frozenset({int, float, bool, type(None), complex})
_ATOMIC = _SCALARS | {str, bytes}
DELETED = "<deleted>"  # the value recorded for a name removed by ``del``
_EVENT_NAMES = {
    LOCALS: sc.EVENT_LOCALS,
    DELETE: sc.EVENT_LOCALS,
    LINE: sc.EVENT_LINE,
    EXPRESSION: sc.EVENT_EXPRESSION,
    RETURN: sc.EVENT_RETURN,
}


def _publish(span: Any, build: Callable[[], list[tuple[str, dict[str, Any], int]]]) -> None:
    """Add the events ``build()`` makes (``(name, attributes, time_ns)``) to ``span``.

    For an SDK span they are made when first read, by the export thread as a rule (see
    :func:`otel_scope._sdk.append_deferred_events`): rendering each value and making each dict
    and event was most of what an event cost the call. Any other span gets ``add_event`` now.
    """
    if not append_deferred_events(span, build):
        for name, attributes, when in build():
            span.add_event(name, attributes, when)


class _Config:
    """Process-wide capture settings; :func:`configure` replaces them."""

    def __init__(self) -> None:
        self.serializer: Any = None
        self.loop_sample = 5
        self.max_events = 100
        self.capture_rate_limit = 0.0
        self.capture_args = True
        self.capture_return = True
        self.text_limit = 0  # the serializer's max_length; 0 before it exists: all text is long
        self.generation = 0
        self.broken = False

    def get_serializer(self) -> Any:
        if self.serializer is None:
            from otel_scope.capture import Serializer

            self.serializer = Serializer()
            self.text_limit = self.serializer.max_length
        return self.serializer


_config = _Config()


def configure(settings: Any) -> None:
    """Adopt ``settings`` (an :class:`otel_scope.config.Settings`): serializer, limits, budget.

    Called by the engine at start-up and whenever settings change. Until then, sane defaults
    apply (the Settings defaults).
    """
    from otel_scope.capture import Serializer

    _config.serializer = Serializer.from_settings(settings)
    _config.text_limit = _config.serializer.max_length
    _config.loop_sample = max(1, int(settings.loop_sample))
    _config.max_events = max(1, int(settings.max_events))
    _config.capture_rate_limit = float(settings.capture_rate_limit)
    _config.capture_args = bool(settings.capture_args)
    _config.capture_return = bool(settings.capture_return)
    _config.generation += 1
    sampling.configure(settings)
    if _config.broken:
        _config.broken = False
        _choose_entries()


_registry: dict[str, dict[str, Probe]] = {}


def bind(code: CodeType, specs: Sequence[tuple[str, SpecData]]) -> CodeType:
    """A rewritten module's ``code`` with a new probe for each of ``specs`` in its placeholder's
    place (see :func:`place`), ready to run.

    ``specs`` is ``((probe name, FunctionSpec.to_data()), ...)``. Each load of the module (an
    import, ``importlib.reload``, ``python -m``) binds probes of its own. They are also kept in a
    registry by module name, so the engine can switch them (see :func:`probes`).
    """
    made: dict[str, Probe] = {}
    for name, data in specs:
        probe = made[name] = Probe(FunctionSpec.from_data(data), name)
        register(probe)
    return place(code, made)


def place(code: CodeType, probes: Mapping[str, Probe]) -> CodeType:
    """``code`` with each probe of ``probes`` (by name) in place of its placeholder constant, in
    the code objects nested in it too (a method, a function defined in a function).

    Rewritten code reads its probe from its constants, not from a module global: Python sets every
    module global to None at interpreter exit, while finalizers may still call the function (a
    multiprocessing ``Connection.__del__`` calls its ``_close``). Compiled code holds a placeholder
    string there (:data:`~otel_scope.compile_time.spec.PLACEHOLDER` and the probe's name), which
    ``marshal`` can cache, and a probe cannot.
    """
    consts = code.co_consts
    changed: list[Any] | None = None  # a copy only for the code that changes (a module's are many)
    new: Any
    for index, const in enumerate(consts):
        if type(const) is CodeType:
            new = place(const, probes)
        elif type(const) is str and const.startswith(PLACEHOLDER):
            new = probes.get(const[len(PLACEHOLDER) :], const)
        else:
            continue
        if new is not const:
            if changed is None:
                changed = list(consts)
            changed[index] = new
    return code if changed is None else code.replace(co_consts=tuple(changed))


def register(probe: Probe) -> None:
    """Track ``probe`` by its module and name, so that :func:`probes` lists it."""
    _registry.setdefault(probe.spec.module, {})[probe.key] = probe


def probes(module: str) -> list[Probe]:
    """The probes of module ``module`` (set ``probe.on`` to switch a function's capture)."""
    return list(_registry.get(module, {}).values())


def _disable(exc: BaseException) -> None:
    """A recorder bug: switch compile-time capture off for the process, with one warning."""
    if not _config.broken:
        _config.broken = True
        _log.warning(
            "otel-scope: compile-time capture switched off after an internal error "
            "(the program is not affected): %s: %s",
            type(exc).__name__,
            exc,
        )
        _choose_entries()  # every gate shut: calls no longer reach enter(), nor are counted


def _choose_entries() -> None:
    """Every probe's entry test chooses again: ``_config.broken`` changed."""
    for module in list(_registry.values()):
        for probe in list(module.values()):
            probe._choose_entry()


class _PointInfo:
    """What emitting one point's events needs, computed once per probe."""

    __slots__ = (
        "_secret",
        "_secret_for",
        "event",
        "kind",
        "line",
        "names",
        "single",
        "text",
        "type_keys",
        "value_keys",
    )

    def __init__(self, kind: str, line: int, names: tuple[str, ...], text: str) -> None:
        self.kind = kind
        self.line = line
        self.names = names
        self.text = text
        self.event = _EVENT_NAMES[kind]
        self.single = kind == LOCALS and len(names) == 1
        self.value_keys = tuple(sc.VAR_PREFIX + n for n in names)
        self.type_keys = tuple(sc.VAR_PREFIX + n + sc.VAR_TYPE_SUFFIX for n in names)
        self._secret: tuple[bool, ...] = ()
        self._secret_for: Any = None

    def secret(self, serializer: Any) -> tuple[bool, ...]:
        """Which of the point's names are redacted (asked once per serializer, not per value)."""
        if self._secret_for is not serializer:
            is_secret = serializer.redactor.is_secret
            self._secret = tuple(_is_secret(is_secret, n) for n in self.names)
            self._secret_for = serializer
        return self._secret


def _is_secret(is_secret: Any, name: str) -> bool:
    try:
        return bool(is_secret(name))
    except Exception:
        return True  # a name that cannot be checked is not trusted


class Probe:
    """One instrumented function's switch, span name and attributes (see the module doc).

    ``on`` is read by the rewritten code on every call; set it to ``False`` to make the function
    run its original body with no other cost. Next the rewritten code tests ``refused``, the
    span core's remembered refusal, against ``current.get()`` (the current context) and the
    global provider (an attribute of ``providers``), and runs its original body without calling
    :meth:`enter` when the span core said no under both already. A function whose calls must all
    pass the refusal test (its call sampler counts every call; or it follows a runtime wrapper's
    sampling) tests :data:`~otel_scope.runtime.tracing.NO_REFUSAL` instead, which never matches.
    Last, the rewritten code numbers the call with ``gate.tick()`` and runs its original body when
    the number is below ``gate.next_check``: the call sampler left it out (see
    :mod:`otel_scope.capture.sampling`). Only the other calls reach :meth:`enter`, with their
    number. The gate of a function without a sampler lets every call through uncounted
    (:data:`~otel_scope.capture.sampling.OPEN`); after an internal error every gate is
    :data:`~otel_scope.capture.sampling.SHUT` until :func:`configure` runs again.
    """

    __slots__ = (
        "__weakref__",
        "_follows",
        "_generation",
        "_limiter",
        "_sampler",
        "_secrets",
        "attributes",
        "current",
        "gate",
        "key",
        "name",
        "on",
        "points",
        "providers",
        "refused",
        "spec",
    )

    def __init__(self, spec: FunctionSpec, key: str, enabled: bool = True) -> None:
        self.on = enabled
        self.spec = spec
        self.key = key  # its name: where the code's placeholder said it goes, its registry entry
        self.name = f"{spec.module}.{spec.qualname}"
        self.attributes = {
            sc.CODE_FUNCTION_NAME: self.name,
            sc.CODE_FILE_PATH: spec.filename,
            sc.CODE_LINE_NUMBER: spec.def_line,
            sc.MECHANISM: sc.MECHANISM_COMPILE_TIME,
        }
        if spec.target:
            self.attributes[sc.TARGET] = spec.target
        self.points = [_PointInfo(p.kind, p.line, p.names, p.text) for p in spec.points]
        self._secrets: tuple[Any, frozenset[int]] = (None, frozenset())
        self._limiter: Any = None
        self._generation = -1
        self.current = CURRENT
        self.providers = provider_namespace()
        self._sampler = sampling.sampler_for(self.name, _named_exactly(spec.target))
        # Set by the engine when a runtime wrapper of this function samples its calls (hybrid):
        # then a call records only on the wrapper's span, so both mechanisms keep the same calls.
        self._follows = False
        self._choose_entry()

    @property
    def sampler(self) -> sampling.CallSampler | None:
        """The function's call sampler, or ``None`` when every call is kept."""
        return self._sampler

    @sampler.setter
    def sampler(self, sampler: sampling.CallSampler | None) -> None:
        self._sampler = sampler
        self._choose_entry()

    @property
    def follows(self) -> bool:
        """Whether a call records only on the span of a runtime wrapper of the same function."""
        return self._follows

    @follows.setter
    def follows(self, follows: bool) -> None:
        self._follows = follows
        self._choose_entry()

    def _choose_entry(self) -> None:
        """What the entry test compares (see the class doc): skipping :meth:`enter` on a refusal
        is exact only when it would have done nothing but ask the span core; the sampler is the
        gate only of calls that ask it (not of those following a runtime wrapper's sampling)."""
        sampler = self._sampler
        self.refused = REFUSAL if sampler is None and not self._follows else NO_REFUSAL
        gate: sampling.Gate = sampling.OPEN if sampler is None or self._follows else sampler
        self.gate = sampling.SHUT if _config.broken else gate

    def secret_points(self, serializer: Any) -> frozenset[int]:
        """The indices of the variable points that assign a name ``serializer`` redacts (asked
        once per serializer: most functions have none, and then a call checks nothing)."""
        asked, found = self._secrets
        if asked is not serializer:
            points = enumerate(self.points)
            found = frozenset(i for i, p in points if p.kind == LOCALS and True in p.secret(serializer))
            self._secrets = (serializer, found)
        return found

    def _allow(self) -> bool:
        if self._generation != _config.generation:
            self._generation = _config.generation
            if _config.capture_rate_limit > 0:
                from otel_scope.capture import RateLimiter

                self._limiter = RateLimiter(_config.capture_rate_limit)
            else:
                self._limiter = None
        return self._limiter is None or self._limiter.allow()

    def enter(self, call: int) -> CallRecorder | None:
        """A recorder for call number ``call`` (its gate's ``tick()``), or ``None`` when nothing
        would be recorded."""
        try:
            if self._follows:
                span = claim_call_span()
                return CallRecorder(self, span, None, False) if span is not None and self._allow() else None
            sampler = self._sampler
            if sampler is not None and not sampler.admit_at(call):
                return None  # before anything is allocated
            context = decide()  # None: no SDK, sampled out, or outside an explicit session
            if context is None:
                return None
            span = claim_call_span()  # a runtime wrapper's span for this very call: share it
            if span is not None:
                return CallRecorder(self, span, None, False) if self._allow() else None
            if not self._allow():
                return None
            started = begin(self.name, self.attributes, context, sampler=sampler)
            if started is None:
                return None
            return CallRecorder(self, started[0], started[1], True)
        except Exception as exc:
            _disable(exc)
            return None


@functools.lru_cache(maxsize=256)
def _named_exactly(target: str) -> bool:
    """Whether one of the patterns in ``target`` (comma-separated) names the function itself.

    No pattern at all (a module rewritten directly, not through a target) counts as named.
    Remembered per text: every probe of a package-wide target asks it of the same text, once per
    function rewritten (a parse is about 2 µs; a hit, 0.05 µs).
    """
    if not target:
        return True
    for text in filter(None, (t.strip() for t in target.split(","))):
        try:
            if parse_pattern(text).names_function:
                return True
        except PatternError:
            continue
    return False


def _events(
    points: Sequence[_PointInfo],
    serializer: Serializer,
    entries: list[tuple[Any, ...]],
    context: Any,
    hits: list[int],
    returned: tuple[str, str] | None,
) -> list[tuple[str, dict[str, Any], int]]:
    """A call's events, ``(name, attributes, time_ns)`` per kept capture (see
    ``CallRecorder._publish``).

    Runs when the span's events are first read, once per recorded call, usually on the export thread.
    ``context`` is the span's context; ``hits`` the final hit count of each point (the return
    event of the last hit carries the return value, ``returned``: its text and type, or
    ``None``). Each event's attributes are built in one dict display, and each value type's
    name is looked up once per call. Never raises: an internal error switches capture off, and
    the events keep their mechanism only.
    """
    try:
        session = trace_hex(context.trace_id)
        type_name = serializer.type_name
        type_names: dict[type, str] = {}
        rendered = _Rendered
        out = []
        for _seq, when, index, hit, payload in entries:
            point = points[index]
            if point.single and type(payload[0]) in _ATOMIC:
                value = payload[0]
                t = type(value)
                name = type_names.get(t)
                if name is None:
                    name = type_names[t] = type_name(value)
                single = {
                    sc.MECHANISM: sc.MECHANISM_COMPILE_TIME,
                    sc.SESSION_ID: session,
                    sc.CODE_LINE_NUMBER: point.line,
                    sc.HIT: hit,
                    point.value_keys[0]: serializer(value),
                    point.type_keys[0]: name,
                }
                out.append((point.event, single, when))
                continue
            attributes = {
                sc.MECHANISM: sc.MECHANISM_COMPILE_TIME,
                sc.SESSION_ID: session,
                sc.CODE_LINE_NUMBER: point.line,
                sc.HIT: hit,
            }
            kind = point.kind
            if kind == LOCALS:
                for vkey, tkey, value in zip(point.value_keys, point.type_keys, payload, strict=True):
                    t = type(value)
                    if t is rendered:
                        attributes[vkey] = value.text
                        attributes[tkey] = value.type
                        continue
                    attributes[vkey] = serializer(value)
                    name = type_names.get(t)
                    if name is None:
                        name = type_names[t] = type_name(value)
                    attributes[tkey] = name
            elif kind == DELETE:
                for vkey in point.value_keys:
                    attributes[vkey] = DELETED
            elif kind == EXPRESSION:
                value = payload[0]
                attributes[sc.EXPRESSION_TEXT] = serializer.scrub(point.text)  # source can hold a literal key
                attributes[sc.EXPRESSION_VALUE] = value.text if type(value) is rendered else serializer(value)
            elif kind == RETURN and returned is not None and hit == hits[index]:
                attributes[sc.RETURN_VALUE], attributes[sc.RETURN_TYPE] = returned
            out.append((point.event, attributes, when))
        return out
    except Exception as exc:
        _disable(exc)
        return [(points[e[2]].event, {sc.MECHANISM: sc.MECHANISM_COMPILE_TIME}, e[1]) for e in entries]


class _Rendered:
    """A value serialized at capture time (it was mutable)."""

    __slots__ = ("text", "type")

    def __init__(self, text: str, type_name: str) -> None:
        self.text = text
        self.type = type_name


class CallRecorder:
    """Collects one call's captures and emits them as events when the call ends."""

    __slots__ = (
        "attributes",
        "context",
        "evicted",
        "first",
        "hits",
        "limit",
        "limiter_dropped",
        "own",
        "probe",
        "redacted",
        "return_rendered",
        "return_value",
        "returned",
        "rings",
        "sample",
        "scanned",
        "seq",
        "span",
        "token",
        "yields",
    )

    def __init__(self, probe: Probe, span: Any, token: object, own: bool) -> None:
        self.probe = probe
        self.span = span
        self.token = token
        self.own = own
        # What resume() re-attaches after a yield: only generators need it.
        self.context = otel_context.get_current() if own and probe.spec.generator else None
        self.hits = [0] * len(probe.points)
        self.sample = _config.loop_sample  # hits kept first by each point (read on every capture)
        self.limit = _config.text_limit  # text longer than this is rendered when captured
        self.first: list[tuple[Any, ...]] = []
        self.rings: dict[int, deque[Any]] | None = None
        self.scanned = 0  # entries of self.first whose secret values the serializer remembers
        self.seq = 0
        self.evicted = 0
        self.returned = False
        self.return_value: Any = None
        self.return_rendered: tuple[str, str] | None = None  # see _return_attributes
        self.yields = 0
        limiter = probe._limiter
        self.limiter_dropped = limiter.dropped if limiter is not None else 0
        self.redacted = 0
        # The span attributes set as the call ends: arguments (of our own span), the summary
        # of its captures, its return value. Filled in place: one dict per call.
        self.attributes: dict[str, Any] = {}

    # --- called by the rewritten code -----------------------------------------------------------

    def v(self, index: int, *values: Any) -> None:
        """Names assigned by the statement of point ``index`` now hold ``values``.

        The commonest capture of all, so :meth:`_hit` and :meth:`_keep` are inlined for a point's
        first ``loop_sample`` hits (each saved call is a tenth of the capture's cost). A value
        is kept as it is if it is a scalar or text within the serializer's max length (the
        test :meth:`_render` makes too), else rendered now.
        """
        try:
            hits = self.hits
            hit = hits[index] = hits[index] + 1
            if hit > self.sample and self._thinned(hit):
                return
            for value in values:
                t = type(value)
                if t not in _SCALARS and ((t is not str and t is not bytes) or len(value) > self.limit):
                    values = self._render(index, values)
                    break
            if hit <= self.sample:
                self.seq = seq = self.seq + 1
                self.first.append((seq, time_ns(), index, hit, values))
            else:
                self._keep(index, hit, values)
        except Exception as exc:
            _disable(exc)

    def d(self, index: int) -> None:
        """Names of point ``index`` were deleted."""
        try:
            hit = self._hit(index)
            if hit:
                self._keep(index, hit, None)
        except Exception as exc:
            _disable(exc)

    def l(self, index: int) -> None:  # noqa: E743 - one letter keeps rewritten lines short
        """Line of point ``index`` was reached."""
        try:
            hit = self._hit(index)
            if hit:
                self._keep(index, hit, None)
        except Exception as exc:
            _disable(exc)

    def x(self, index: int, value: Any) -> Any:
        """An expression of point ``index`` evaluated to ``value``; returns it unchanged."""
        try:
            hit = self._hit(index)
            if hit:
                t = type(value)  # kept as it is on the terms v() and _render() keep values on
                kept = t in _SCALARS or ((t is str or t is bytes) and len(value) <= self.limit)
                payload = (value,) if kept else self._render(index, (value,))
                self._keep(index, hit, payload)
        except Exception as exc:
            _disable(exc)
        return value

    def ret(self, index: int, value: Any) -> Any:
        """The call returns ``value`` from point ``index``; returns it unchanged."""
        try:
            self.returned = True
            self.return_value = value
            hits = self.hits
            hit = hits[index] = hits[index] + 1
            if hit <= self.sample:  # as in v(): the first hits of the point, inline
                self.seq = seq = self.seq + 1
                self.first.append((seq, time_ns(), index, hit, None))
            elif not self._thinned(hit):
                self._keep(index, hit, None)
        except Exception as exc:
            _disable(exc)
        return value

    def a(self, *values: Any) -> None:
        """The call's arguments (in parameter order): span attributes of a span we opened."""
        try:
            if self.own and _config.capture_args:
                named = (_config.serializer or _config.get_serializer()).named
                attributes = self.attributes
                for name, value in zip(self.probe.spec.params, values, strict=True):
                    attributes[sc.ARG_PREFIX + name] = named(name, value)
        except Exception as exc:
            _disable(exc)

    def suspend(self, value: Any) -> Any:
        """A generator is about to yield ``value``: take our span out of the current context."""
        self.yields += 1
        if self.token is not None:
            try:
                otel_context.detach(self.token)  # type: ignore[arg-type]
            except Exception:
                pass  # resumed in another context; nothing of ours is attached there
            self.token = None
        return value

    def resume(self, value: Any) -> Any:
        """A generator resumed (``value`` was sent in): make our span current again."""
        if self.own and self.token is None:
            try:
                self.token = otel_context.attach(self.context)  # type: ignore[arg-type]
            except Exception as exc:
                _disable(exc)
        return value

    def __enter__(self) -> CallRecorder:
        return self

    def __exit__(self, error_type: type | None, error: BaseException | None, tb: Any) -> None:
        """The call ended (``error`` if it raised): emit the events, close our span (never raises)."""
        probe = self.probe
        if self.own:
            if probe._sampler is not None:
                sampling.budget().spend(self.seq)
        elif probe._follows:  # the runtime wrapper charged the span already
            sampling.budget().spend_items(self.seq)
        attributes = self.attributes
        try:
            self._emit(attributes)
        except Exception as exc:
            _disable(exc)
        try:
            if self.own:
                self._close(attributes, error)
            elif attributes:
                set_attributes(self.span, attributes)  # the runtime wrapper's span
        except Exception as exc:
            _disable(exc)

    def abandon(self, how: str) -> Any:
        """The process ends abruptly (``how``) while this call runs: emit what it captured so
        far, and return its own span for ``tracing.end_unfinished`` to end (None when it
        records onto a runtime span, which is found where the probe opened it)."""
        span, attributes = self.span, self.attributes
        self._emit(attributes)
        if attributes:
            set_attributes(span, attributes)
        return span if self.own else None

    # --- internals -------------------------------------------------------------------------------

    def _render(self, index: int, values: tuple[Any, ...]) -> tuple[Any, ...]:
        """``values`` of point ``index`` as kept: scalars and text within the max length as
        they are, anything else rendered now (redacted, and counted, under a secret name)."""
        serializer = _config.get_serializer()
        if self.scanned < len(self.first):
            self._remember_secrets(serializer)
        secret = self.probe.points[index].secret(serializer) or (False,) * len(values)
        limit = self.limit
        rendered = []
        for hidden, value in zip(secret, values, strict=True):
            t = type(value)
            if t in _SCALARS or ((t is str or t is bytes) and len(value) <= limit):
                if hidden:  # rendered at the end, but its copies may be rendered before that
                    serializer.remember_secret(value)
                rendered.append(value)
            elif hidden:
                self.redacted += 1
                rendered.append(_Rendered(serializer.hidden(value), serializer.type_name(value)))
            else:
                rendered.append(_Rendered(serializer(value), serializer.type_name(value)))
        return tuple(rendered)

    def _remember_secrets(self, serializer: Any) -> None:
        """Let the serializer hide copies of the secret strings kept so far (``pw`` then ``[pw]``).

        Strings are kept raw and rendered only at the end of the call, but a container holding a
        copy is rendered now; each kept entry is looked at once, and only when a container is.
        """
        first = self.first
        points = self.probe.points
        for entry in first[self.scanned :]:
            payload = entry[4]
            if payload is not None:
                flags = points[entry[2]].secret(serializer)
                if True in flags:
                    for hidden, value in zip(flags, payload, strict=False):
                        if hidden:
                            serializer.remember_secret(value)
        self.scanned = len(first)

    def _hit(self, index: int) -> int:
        """Count a hit of point ``index``; its number if it may be kept, 0 if thinned out."""
        hits = self.hits
        hit = hits[index] = hits[index] + 1
        return 0 if hit > self.sample and self._thinned(hit) else hit

    def _thinned(self, hit: int) -> bool:
        """Whether hit number ``hit`` (past ``loop_sample``) of a point is dropped unrendered.

        Decided before the values are rendered, so a long loop costs little per iteration past
        ``16 * loop_sample`` hits: from there on only every 2nd, then 4th, 8th... hit (the stride
        doubles each time the hit count does) competes for the ring of last hits.
        """
        thin_from = self.sample << 4
        if hit > thin_from and (hit - thin_from) % (1 << (hit // thin_from).bit_length()):
            self.evicted += 1
            return True
        return False

    def _keep(self, index: int, hit: int, payload: Any) -> None:
        self.seq = seq = self.seq + 1
        entry = (seq, time_ns(), index, hit, payload)
        sample = self.sample
        if hit <= sample:
            self.first.append(entry)
            return
        rings = self.rings
        if rings is None:
            rings = self.rings = {}
        ring = rings.get(index)
        if ring is None:
            ring = rings[index] = deque(maxlen=sample)
        elif len(ring) == sample:
            self.evicted += 1
        ring.append(entry)

    def _emit(self, attributes: dict[str, Any]) -> None:
        """Publish the kept captures as events; put the span attributes that summarize them in
        ``attributes``."""
        entries = self.first
        if self.rings:
            entries = entries + [e for ring in self.rings.values() for e in ring]
            entries.sort(key=lambda e: e[0])
        budget = _config.max_events
        over = len(entries) - budget
        if over > 0:
            head = budget - budget // 2
            entries = entries[:head] + entries[len(entries) - (budget - head) :]
        if entries:
            self._publish(entries)
        evicted = self.evicted
        dropped = evicted + max(0, over)
        if self.probe.points:  # a function with capture points says how many it kept and dropped
            attributes[sc.CAPTURES_RECORDED] = len(entries)
            attributes[sc.CAPTURES_DROPPED] = dropped
        if dropped:
            reasons = [r for r, n in (("loop_sampling", evicted), ("max_events", over)) if n > 0]
            attributes[sc.CAPTURES_DROPPED_REASON] = ",".join(reasons)
        if self.redacted:
            attributes[sc.REDACTED_COUNT] = self.redacted
        if self.limiter_dropped:
            attributes[sc.RATE_LIMITED] = self.limiter_dropped

    def _publish(self, entries: list[tuple[Any, ...]]) -> None:
        """Publish the kept captures, their events made when first read (see :func:`_publish`).

        What may not wait is done now: a value under a secret name, and a copy of a secret string
        under another name, is redacted and counted (the span's count is set as the call ends,
        and the secret's copies must be hidden from now on), and the return value, which is the
        user's object, is rendered. Long text was rendered when captured (see :meth:`v`); other
        values are immutable scalars: rendered later, they read as they do now. Until a secret
        is seen in the process, a function that assigns no secret name looks at no kept value.
        """
        serializer = _config.get_serializer()
        points = self.probe.points
        secrets = self.probe.secret_points(serializer)
        if secrets:  # first: hiding them remembers the secrets, so that their copies are found
            for position, entry in enumerate(entries):
                index, payload = entry[2], entry[4]
                if index in secrets and payload is not None:
                    hidden = points[index].secret(serializer)
                    entries[position] = (*entry[:4], self._sealed(payload, hidden, serializer))
        known = serializer.secret_values
        if known:
            for position, entry in enumerate(entries):
                payload = entry[4]
                if payload is not None and any(type(v) is str and v in known for v in payload):
                    entries[position] = (*entry[:4], self._sealed(payload, (), serializer))
        returned = None
        if self.returned and _config.capture_return:
            returned = self._return_attributes(serializer)
        context = self.span.get_span_context()
        build = functools.partial(_events, points, serializer, entries, context, self.hits, returned)
        _publish(self.span, build)

    def _sealed(
        self, payload: tuple[Any, ...], hidden: tuple[bool, ...], serializer: Serializer
    ) -> tuple[Any, ...]:
        """``payload`` with its values under a secret name (``hidden``: a flag per value) and its
        copies of secret strings redacted now (see :meth:`_publish`)."""
        known = serializer.secret_values
        sealed: list[Any] = []
        for position, value in enumerate(payload):
            t = type(value)
            if t is not _Rendered and (
                (position < len(hidden) and hidden[position]) or (t is str and value in known)
            ):
                self.redacted += 1
                sealed.append(_Rendered(serializer.hidden(value), serializer.type_name(value)))
            else:
                sealed.append(value)
        return tuple(sealed)

    def _return_attributes(self, serializer: Serializer) -> tuple[str, str]:
        """The return value's text and type, rendered once per call: both the return event and
        the span carry them, and rendering a container twice cost a tenth of a recorded call."""
        rendered = self.return_rendered
        if rendered is None:
            value = self.return_value
            rendered = self.return_rendered = (serializer(value), serializer.type_name(value))
        return rendered

    def _close(self, attributes: dict[str, Any], error: BaseException | None) -> None:
        span = self.span
        if self.probe.spec.generator:
            attributes[sc.YIELD_COUNT] = self.yields
            attributes[sc.GENERATOR_END] = (
                "exhausted"
                if error is None
                else "closed"
                if isinstance(error, GeneratorExit)
                else "cancelled"
                if cancelled(error)
                else "error"
            )
        if error is not None and not isinstance(error, GeneratorExit):
            record_call_end(span, error, _config.get_serializer())
        elif self.returned and _config.capture_return:
            attributes[sc.RETURN_VALUE], attributes[sc.RETURN_TYPE] = self._return_attributes(
                _config.get_serializer()
            )
        if attributes:
            set_attributes(span, attributes)  # all made here: bounded strings and numbers
        token, self.token = self.token, None
        if token is not None:
            end_call(span, token)  # detach (the generator may finish in another context), end
        else:
            end_span(span)


holds_calls(CallRecorder, CallRecorder.abandon)  # its own spans are found through it at an abrupt exit
