"""Warnings that anyone on the mesh can cause, logged in full a few times a minute and counted
past that.

Each refused message is worth a line until someone sends a hundred a second: then the lines
cost the Leader the time it needs for honest traffic and push what matters (a host going
offline) out of journald's rate limit. So each kind of warning (its ``key``) is logged in full
``per_interval`` times per ``interval``; past that it is counted, and the count is logged as one
line when the next interval begins (or on ``flush``).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections import Counter
from collections.abc import Callable

PER_INTERVAL = 20
INTERVAL_S = 60.0
# Keys are the callers' reasons, a short fixed list; past this many the rest share one key.
MAX_KEYS = 256

_LIVE: weakref.WeakSet[LimitedWarnings] = weakref.WeakSet()


def flush_due() -> None:
    """Log the counts of every limiter whose interval has ended, for a caller with a timer (the
    Leader's tick): without it, a flood that stops leaves its count untold until the next
    warning of its kind."""
    for limited in list(_LIVE):
        limited.flush_if_due()


class LimitedWarnings:
    """``warning(key, msg, *args)`` as ``logger.warning``, at most ``per_interval`` per key and
    interval, with a count of the rest."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        per_interval: int = PER_INTERVAL,
        interval: float = INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._per_interval = per_interval
        self._interval = interval
        self._clock = clock
        self._window_start = clock()
        self._logged: Counter[str] = Counter()
        self._suppressed: Counter[str] = Counter()
        _LIVE.add(self)

    def flush_if_due(self) -> None:
        now = self._clock()
        if now - self._window_start >= self._interval:
            self.flush()
            self._window_start = now

    def warning(self, key: str, msg: str, *args: object) -> None:
        self.flush_if_due()
        if key not in self._logged and len(self._logged) >= MAX_KEYS:
            key = "other"
        if self._logged[key] < self._per_interval:
            self._logged[key] += 1
            self._logger.warning(msg, *args)
        else:
            self._suppressed[key] += 1

    def flush(self) -> None:
        """Log the count of each key's warnings that were not logged, and start afresh."""
        now = self._clock()
        for key, count in sorted(self._suppressed.items()):
            self._logger.warning(
                "%d more '%s' warning%s since %.0f s ago, not logged one by one",
                count,
                key,
                "" if count == 1 else "s",
                now - self._window_start,
            )
        self._logged.clear()
        self._suppressed.clear()
