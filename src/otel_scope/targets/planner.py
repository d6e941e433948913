"""The mode planner: which mechanism each target gets, and why (the seed's determine_optimal_mode).

Rules, in order:

* ``off``: nothing.
* ``runtime``: a runtime span per call; requested locals/lines are ignored (and said so).
* ``compile_time``: compile-time capture (a span per call made by the rewritten code); where no
  source is available, a runtime span instead.
* ``hybrid``: runtime spans for ``targets``, compile-time capture for ``locals``; a function named
  by both gets one span carrying its events.
* ``auto`` (the default): in ``development``, as ``hybrid``. In ``production``, runtime only,
  unless compile-time is explicitly allowed (``OTEL_SCOPE_PRODUCTION_COMPILE_TIME``); then
  capture runs with stricter limits (see :func:`production_limits`).

Every decision carries human-readable reasons, shown by ``otel-scope plan`` and logged at debug.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, NamedTuple

from otel_scope.config import Settings
from otel_scope.config.patterns import TargetPattern
from otel_scope.targets.plan import CapturePlan
from otel_scope.vocabulary import LEVEL_ORDER, Mechanism, mechanism

#: The ``source`` of the requests escalation adds itself (:mod:`otel_scope.runtime.escalation`).
ESCALATION = "escalation"


class Request(NamedTuple):
    """What a user asked for one pattern (from settings or ``otel_scope.trace``).

    A named tuple: compared and hashed by value, and cheaper than a dataclass to create at start.
    """

    pattern: TargetPattern
    mode: str = "auto"  # per-request override; "auto" defers to the settings' mode
    runtime: bool = True  # a span per call was asked for (a --scope-targets pattern)
    capture_locals: frozenset[str] | Literal[False] | None = False  # False: none; None: all; else names
    lines: tuple[int, ...] = ()
    level: str | None = None
    state: bool = False
    source: str = "settings"

    @property
    def by_user(self) -> bool:
        """Whether a user asked for it (settings, the API, live control), not escalation: only
        what a user named is kept in full and said in a line when it cannot be done."""
        return self.source != ESCALATION


class Decision(NamedTuple):
    """What one function gets. ``runtime_if_refused``: compile-time capture is the only span
    asked for (a hybrid locals-only request), so if compile-time refuses the function (generated
    code such as namedtuple's ``_make``, ``exec``, an edited file) a runtime span is installed in
    its place: the user still gets a span per call, only without the locals. A named tuple:
    compared and hashed by value, and cheaper than a dataclass to create at start."""

    runtime: bool
    capture: CapturePlan | None
    reasons: tuple[str, ...]
    runtime_if_refused: bool = False

    @property
    def mechanism(self) -> Mechanism:
        return mechanism(self.runtime, self.capture is not None)


# How a runtime span is reached, said wherever a plan has one without compile-time capture.
RUNTIME_REACH = (
    "runtime span per call, through the function's code (every reference reaches it: registries, "
    "callbacks, partials); objects without code of their own (lru_cache, partial) are wrapped at "
    "their attribute"
)


def effective_mode(settings: Settings, requested: str = "auto") -> tuple[str, str]:
    """The concrete mode for a request, and why."""
    if settings.mode == "off":
        return "off", "mode is off"
    mode = requested if requested != "auto" else settings.mode
    if mode != "auto":
        return mode, f"mode {mode} was asked for"
    if settings.production:
        if settings.production_compile_time:
            return "hybrid", "auto in production with compile-time explicitly allowed: hybrid"
        return "runtime", "auto in production: runtime only (compile-time not allowed in production)"
    return "hybrid", "auto in development: hybrid"


def decide(request: Request, settings: Settings, source_available: bool = True) -> Decision:
    """Plan one request. ``source_available`` is whether compile-time rewriting can see the source."""
    mode, why = effective_mode(settings, request.mode)
    reasons = [why]
    if mode == "off":
        return Decision(False, None, tuple(reasons))
    wants_capture = (
        request.capture_locals is not False
        or bool(request.lines)
        or request.level
        in (
            "lines",
            "expressions",
        )
    )
    level = request.level or (settings.level if request.capture_locals is not False else "boundaries")
    names = request.capture_locals if request.capture_locals is not False else frozenset()
    plan = CapturePlan(
        locals=names if isinstance(names, frozenset) or names is None else frozenset(),
        lines=request.lines,
        level=level,
        target=request.pattern.text,
    )
    if mode == "runtime":
        if wants_capture:
            reasons.append("locals/lines requested but the mode is runtime: only a span per call")
        reasons.append(RUNTIME_REACH)
        return Decision(True, None, tuple(reasons))
    if mode == "compile_time" or (mode == "hybrid" and (wants_capture or not request.runtime)):
        if not source_available:
            reasons.append("no source available for compile-time rewriting: runtime span instead")
            reasons.append(RUNTIME_REACH)
            return Decision(True, None, tuple(reasons))
        runtime = mode == "hybrid" and request.runtime
        reasons.append(
            "compile-time capture of "
            + ("all locals" if plan.locals is None else ", ".join(sorted(plan.locals)) or "no locals")
            + (f", lines {'+'.join(map(str, plan.lines))}" if plan.lines else "")
            + f" at level {plan.level}"
        )
        if runtime:
            reasons.append(
                "also a runtime target: one span per call carries the events, through the "
                "function's code (every reference reaches it)"
            )
        fallback = mode == "hybrid" and not runtime
        if fallback:
            reasons.append("if compile-time capture refuses it: a runtime span per call instead")
        return Decision(runtime, plan, tuple(reasons), runtime_if_refused=fallback)
    reasons.append(RUNTIME_REACH)
    return Decision(True, None, tuple(reasons))


def merge_captures(plans: Iterable[CapturePlan]) -> CapturePlan | None:
    """One capture plan that does what each of ``plans`` asks (union of names and lines)."""
    plans = list(plans)
    if not plans:
        return None
    names: frozenset[str] | None = frozenset()
    for p in plans:
        names = None if names is None or p.locals is None else names | p.locals
    level = max((p.level for p in plans), key=LEVEL_ORDER.__getitem__)
    lines = tuple(sorted({n for p in plans for n in p.lines}))
    return CapturePlan(
        locals=names, lines=lines, level=level, target=",".join(sorted({p.target for p in plans}))
    )


def decide_function(requests: Sequence[Request], settings: Settings, source_available: bool) -> Decision:
    """The merged decision for one function selected by several requests.

    A function named by a runtime request and a compile-time one gets both: one span per call
    carrying the compile-time events.
    """
    decisions = [decide(r, settings, source_available) for r in requests]
    runtime = any(d.runtime for d in decisions)
    return Decision(
        runtime=runtime,
        capture=merge_captures(d.capture for d in decisions if d.capture is not None),
        reasons=tuple(
            f"{r.pattern.text}: {why}" for r, d in zip(requests, decisions, strict=True) for why in d.reasons
        ),
        runtime_if_refused=not runtime and any(d.runtime_if_refused for d in decisions),
    )


def production_limits(settings: Settings) -> Settings:
    """Stricter capture limits applied when compile-time capture runs in production."""
    return settings.replace(
        max_value_length=min(settings.max_value_length, 256),
        max_items=min(settings.max_items, 10),
        max_events=min(settings.max_events, 32),
        loop_sample=min(settings.loop_sample, 2),
        capture_rate_limit=settings.capture_rate_limit or 1.0,
        rate_limit=settings.rate_limit or 100.0,
    )


def requests_from_settings(settings: Settings) -> list[Request]:
    """The requests the settings make: targets, locals and state patterns."""
    out: list[Request] = []
    for p in settings.targets:
        out.append(Request(p, lines=p.lines, capture_locals=False))
    for p in settings.locals:
        out.append(Request(p, runtime=False, capture_locals=None, lines=p.lines, level=settings.level))
    for p in settings.state:
        out.append(Request(p, state=True, capture_locals=False))
    return out
