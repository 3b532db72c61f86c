"""What the dispatcher has done since it started, counted by topic and outcome, for /metrics.

Counted on the dispatcher's thread, read from the HTTP threads: a lock keeps a reader from
seeing a count half updated. Lost at a restart, as Prometheus counters are expected to be.
"""

from __future__ import annotations

import threading
from collections import Counter

from cooee_agent.leader.handled import Handled


class HandledTally:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def add(self, handled: Handled) -> None:
        with self._lock:
            self._counts[(handled.topic, handled.reason)] += 1

    def snapshot(self) -> dict[tuple[str, str], int]:
        """(topic, outcome) -> messages handled so far."""
        with self._lock:
            return dict(self._counts)
