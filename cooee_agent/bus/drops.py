"""What the mesh node refuses or cannot send, counted and told to the operator in summaries.

A flood is exactly when a line per dropped message would bury the log (and, at 95 messages a
second, cost the node the time it needs for honest traffic), so each reason and peer gets one
WARNING when it first drops and then one summary per ``interval`` while drops go on. The totals
are kept for the node's life, so ``MeshNode.drop_counts`` can say what was lost since it started.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

logger = logging.getLogger(__name__)

# A peer id per key at most this many distinct keys are summarised one by one; a Sybil flood of
# fresh peer ids is folded into one "other peers" line instead of a line each.
MAX_NAMED_PEERS = 64
SUMMARY_INTERVAL_S = 60.0


class DropTally:
    """Counts drops by (reason, peer) and logs a bounded number of summaries."""

    def __init__(
        self,
        what: str,
        *,
        interval: float = SUMMARY_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._what = what
        self._interval = interval
        self._clock = clock
        self._totals: Counter[str] = Counter()
        self._pending: Counter[tuple[str, str]] = Counter()
        self._pending_bytes: Counter[tuple[str, str]] = Counter()
        self._last_report: float | None = None

    def count(self, reason: str, peer: str, size: int = 0) -> None:
        """One message dropped for ``reason`` from or to ``peer``; ``size`` bytes of it."""
        self._totals[reason] += 1
        named = {key[1] for key in self._pending}
        if peer not in named and len(named) >= MAX_NAMED_PEERS:
            peer = "other peers"
        self._pending[(reason, peer)] += 1
        self._pending_bytes[(reason, peer)] += size
        now = self._clock()
        if self._last_report is None or now - self._last_report >= self._interval:
            self.report(now)

    def report(self, now: float | None = None) -> None:
        """Log what was dropped since the last report, one line per reason and peer."""
        self._last_report = self._clock() if now is None else now
        for (reason, peer), dropped in sorted(self._pending.items()):
            size = self._pending_bytes[(reason, peer)]
            logger.warning(
                "%s: dropped %d message%s (%d bytes) %s peer %s: %s",
                self._what,
                dropped,
                "" if dropped == 1 else "s",
                size,
                "to" if self._what.startswith("outbound") else "from",
                peer,
                reason,
            )
        self._pending.clear()
        self._pending_bytes.clear()

    def totals(self) -> dict[str, int]:
        """Messages dropped per reason since the tally began."""
        return dict(self._totals)
