"""The auto planner: each environment and option combination gets the documented mechanism."""

from __future__ import annotations

import pytest

from otel_scope.config import Settings, parse_pattern
from otel_scope.targets.planner import Request, decide, production_limits, requests_from_settings

DEV = Settings(environment="development")
PROD = Settings(environment="production")
PROD_ALLOWED = Settings(environment="production", production_compile_time=True)

SPAN = Request(parse_pattern("shop.orders:*"))
LOCALS = Request(parse_pattern("shop.inv:check"), runtime=False, capture_locals=None)
NAMED_LOCALS = Request(parse_pattern("shop.inv:check"), capture_locals=frozenset({"stock"}))
LINES = Request(parse_pattern("shop.inv:check@15+22"), lines=(15, 22))


@pytest.mark.parametrize(
    ("settings", "request_", "source", "mechanism"),
    [
        (DEV, SPAN, True, "runtime"),
        (DEV, LOCALS, True, "compile_time"),
        (DEV, NAMED_LOCALS, True, "hybrid"),
        (DEV, LINES, True, "hybrid"),
        (DEV, LOCALS, False, "runtime"),  # no source: runtime instead, with the reason
        (PROD, SPAN, True, "runtime"),
        (PROD, LOCALS, True, "runtime"),  # compile-time not allowed in production by default
        (PROD, NAMED_LOCALS, True, "runtime"),
        (PROD_ALLOWED, LOCALS, True, "compile_time"),
        (PROD_ALLOWED, NAMED_LOCALS, True, "hybrid"),
        (Settings(mode="runtime"), LOCALS, True, "runtime"),
        (Settings(mode="compile_time"), SPAN, True, "compile_time"),
        (Settings(mode="compile_time"), SPAN, False, "runtime"),
        (Settings(mode="hybrid"), LOCALS, True, "compile_time"),
        (Settings(mode="off"), SPAN, True, "off"),
        (Settings(mode="off"), LOCALS, True, "off"),
    ],
)
def test_planner_picks_the_documented_mechanism(
    settings: Settings, request_: Request, source: bool, mechanism: str
) -> None:
    decision = decide(request_, settings, source)
    assert decision.mechanism == mechanism, decision.reasons
    assert decision.reasons  # every decision explains itself


def test_per_request_mode_overrides_the_settings_mode() -> None:
    forced = Request(parse_pattern("a.b:f"), mode="compile_time", capture_locals=None)
    assert decide(forced, PROD, True).mechanism == "compile_time"


def test_runtime_mode_says_that_requested_locals_are_ignored() -> None:
    decision = decide(LOCALS, Settings(mode="runtime"), True)
    assert any("ignored" in r or "only a span" in r for r in decision.reasons)


def test_lines_alone_are_planned_without_capturing_locals() -> None:
    plan = decide(LINES, DEV, True).capture
    assert plan is not None and plan.lines == (15, 22) and plan.locals == frozenset()
    assert not plan.captures("anything")


def test_production_limits_are_stricter() -> None:
    strict = production_limits(PROD_ALLOWED)
    assert strict.max_events < PROD_ALLOWED.max_events
    assert strict.capture_rate_limit > 0 and strict.max_value_length <= 256


def test_settings_become_requests_for_targets_locals_and_state() -> None:
    s = Settings(
        targets=(parse_pattern("a.b:*"),), locals=(parse_pattern("a.c:f"),), state=(parse_pattern("a.d:C.*"),)
    )
    kinds = [(r.pattern.text, r.runtime, r.capture_locals, r.state) for r in requests_from_settings(s)]
    assert kinds == [
        ("a.b:*", True, False, False),
        ("a.c:f", False, None, False),
        ("a.d:C.*", True, False, True),
    ]
