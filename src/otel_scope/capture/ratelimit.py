"""A token bucket cheap enough to ask on every call of a traced function.

The gate runs *before* anything is allocated for a call (the lesson from ddtrace, which builds
a snapshot and then throws it away), so it has to cost about as much as one clock read.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def _unlimited() -> bool:
    return True


class RateLimiter:
    """Allow at most ``per_second`` calls per second, with bursts of up to ``burst`` calls.

    ``per_second <= 0`` means unlimited: :meth:`allow` is then replaced by a function that
    returns ``True`` without reading the clock. ``burst`` defaults to ``max(1, per_second)``;
    the bucket starts full so the first call is always allowed.

    After :meth:`allow` returns ``True``, :attr:`dropped` is the number of calls it refused
    since the previous allowed call; callers record it on the span they make
    (``otel_scope.rate_limited``) so users can see that calls went uncaptured.

    There is no lock. Under the GIL each statement is atomic but the read-update-write of the
    bucket is not, so two threads arriving together can both take the last token (a few extra
    calls admitted) or lose one count of ``dropped``. For a limit that exists to bound overhead
    that error is harmless, while a lock would add its own cost to every traced call and make
    threads of a busy server queue on one function's limiter.

    ``clock`` is injectable so tests can drive time; it must be monotonic and in seconds.
    """

    def __init__(
        self,
        per_second: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst is not None and burst < 1:
            raise ValueError(f"burst={burst!r}: a bucket smaller than one call never allows any")
        self.per_second = float(per_second)
        self.burst = float(burst) if burst is not None else max(1.0, self.per_second)
        self.dropped = 0
        self._refused = 0
        self._clock = clock
        self._tokens = self.burst
        self._last = clock()
        if self.per_second <= 0:
            self.allow = _unlimited  # type: ignore[method-assign]

    def allow(self) -> bool:
        """True if this call may be captured now; False (and counted) if it is over the limit."""
        now = self._clock()
        tokens = self._tokens + (now - self._last) * self.per_second
        self._last = now
        if tokens > self.burst:
            tokens = self.burst
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            self.dropped = self._refused
            self._refused = 0
            return True
        self._tokens = tokens
        self._refused += 1
        return False
