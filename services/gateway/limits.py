"""Per-caller rate limits: a token bucket per caller (``tenant/subject``), per replica of
the gateway (N replicas allow N times the rate; docs/gateway.md says so).

Example:
    >>> limits = RateLimits(rate_per_s=1.0, burst=2, clock=lambda: 0.0)
    >>> limits.take("acme/alice"), limits.take("acme/alice"), limits.take("acme/alice")
    (0.0, 0.0, 1.0)
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

MAX_CALLERS = 100_000
"""Buckets kept; the least recently used goes first (a full bucket is the same as none)."""


class RateLimits:
    """Token buckets by caller."""

    def __init__(
        self,
        *,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_callers: int = MAX_CALLERS,
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._max = max_callers
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        """caller -> (tokens, when counted)."""

    def take(self, caller: str) -> float:
        """Take one request from ``caller``'s bucket: 0.0 if allowed, else the seconds
        until one is."""
        now = self._clock()
        tokens, at = self._buckets.pop(caller, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate_per_s)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate_per_s
        self._buckets[caller] = (tokens, now)
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return wait
