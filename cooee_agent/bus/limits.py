"""Per-peer token buckets (receive-side limits) and the backoff schedule of redial and outbox."""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``rate`` messages per second sustained, bursts of up to ``burst``."""

    rate: float
    burst: float


class PeerRateLimiter:
    """One token bucket per key (a peer id), bounded in memory so a Sybil flood cannot grow it."""

    def __init__(
        self,
        limit: RateLimit,
        *,
        max_keys: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, key: str) -> bool:
        now = self._clock()
        tokens, stamp = self._buckets.pop(key, (self._limit.burst, now))
        tokens = min(self._limit.burst, tokens + (now - stamp) * self._limit.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        # Forgetting the least recently seen peer only ever gives it a fresh (full) bucket.
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return allowed


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    jitter: float = 0.2,
    rng: Callable[[], float] = random.random,
) -> float:
    """Exponential backoff: ``base * 2**attempt`` capped at ``cap``, then ±``jitter`` (a fraction).

    Jitter spreads a whole cluster's retries after a Leader restart instead of synchronising them.
    """
    delay = min(cap, base * (2 ** min(max(0, attempt), 62)))
    return max(0.0, delay * (1.0 + jitter * (2.0 * rng() - 1.0)))
