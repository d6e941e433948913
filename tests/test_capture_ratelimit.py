"""The token bucket that decides whether a call is captured."""

from __future__ import annotations

import pytest

from otel_scope.capture import RateLimiter


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def test_allows_per_second_calls_in_each_second_of_steady_traffic() -> None:
    clock = FakeClock()
    limiter = RateLimiter(8, burst=1, clock=clock)
    allowed = 0
    for _ in range(1280):  # 128 calls per second for 10 seconds (binary fractions: exact sums)
        allowed += limiter.allow()
        clock.now += 1 / 128
    assert allowed == 80


def test_a_full_bucket_admits_a_burst_then_refuses() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock)
    assert [limiter.allow() for _ in range(12)] == [True] * 10 + [False] * 2


def test_tokens_come_back_with_time_but_never_beyond_the_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, burst=2, clock=clock)
    assert [limiter.allow() for _ in range(3)] == [True, True, False]
    clock.now += 0.1
    assert [limiter.allow() for _ in range(2)] == [True, False]
    clock.now += 3600
    assert [limiter.allow() for _ in range(3)] == [True, True, False]


def test_a_rate_below_one_per_second_allows_one_call_per_period() -> None:
    clock = FakeClock()
    limiter = RateLimiter(0.5, clock=clock)
    assert limiter.allow()
    clock.now += 1.0
    assert not limiter.allow()
    clock.now += 1.0
    assert limiter.allow()


def test_dropped_tells_the_next_allowed_call_how_many_were_refused_before_it() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, clock=clock)
    assert limiter.allow()
    assert limiter.dropped == 0
    assert [limiter.allow() for _ in range(4)] == [False] * 4
    clock.now += 1.0
    assert limiter.allow()
    assert limiter.dropped == 4
    clock.now += 1.0
    assert limiter.allow()
    assert limiter.dropped == 0


@pytest.mark.parametrize("per_second", [0, -1, 0.0])
def test_zero_or_negative_rate_is_unlimited_without_reading_the_clock(per_second: float) -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_second, clock=clock)
    reads = clock.reads
    assert all(limiter.allow() for _ in range(10_000))
    assert clock.reads == reads
    assert limiter.dropped == 0


def test_a_burst_smaller_than_one_call_is_rejected() -> None:
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(10, burst=0.5)
