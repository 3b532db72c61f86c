"""The Leader's cheap pre-check of mesh input, and the count of what it drops, by reason.

The mesh validator drops what is not even shaped like an envelope of its topic before any
signature is checked, and a dropped message is not relayed. Those drops used to be silent: a
misbehaving agent or a second implementation sending the wrong shape looked like a quiet mesh.
Each drop is now counted by reason, and the counts are logged at INFO once per window (never a
line per message: the input is attacker-controlled) and once more when the Leader stops.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from cooee_agent.bus.transport import MAX_MESSAGE_BYTES
from cooee_agent.protocol.kinds import TOPIC_KINDS

log = logging.getLogger(__name__)

# Why a message was dropped, in the order they are checked.
REASONS = ("unknown-topic", "oversized", "not-json", "not-an-envelope", "wrong-kind")
# How often the counts are said, at most.
WINDOW_S = 60.0


def precheck(topic: str, data: bytes) -> str | None:
    """None when ``data`` is shaped like an envelope of a kind ``topic`` carries; else why not."""
    kinds = TOPIC_KINDS.get(topic)
    if kinds is None:
        return "unknown-topic"
    if len(data) > MAX_MESSAGE_BYTES:
        return "oversized"
    if not data.startswith(b"{"):
        return "not-json"
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return "not-json"
    if not (
        isinstance(value, dict)
        and value.get("v") == 1
        and isinstance(value.get("sig"), str)
        and isinstance(value.get("sender"), str)
        and "body" in value
    ):
        return "not-an-envelope"
    if value.get("kind") not in kinds:
        return "wrong-kind"
    return None


class PrecheckDrops:
    """A mesh validator that counts each drop by reason and says the counts once per window.

    Called on the mesh's thread; ``totals`` and ``flush`` may be called from any other.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, window_s: float = WINDOW_S):
        self._clock = clock
        self._window_s = window_s
        self._lock = threading.Lock()
        self._totals: Counter[str] = Counter()
        self._window: Counter[str] = Counter()
        self._window_start = clock()

    def __call__(self, topic: str, data: bytes, from_peer: str) -> bool:
        reason = precheck(topic, data)
        if reason is None:
            return True
        with self._lock:
            self._totals[reason] += 1
            self._window[reason] += 1
        self.flush(force=False)
        return False

    def totals(self) -> dict[str, int]:
        with self._lock:
            return dict(self._totals)

    def flush(self, *, force: bool = True) -> None:
        """Log the window's counts if the window has passed (or ``force``) and any were dropped."""
        now = self._clock()
        with self._lock:
            if not self._window or (not force and now - self._window_start < self._window_s):
                return
            counts, elapsed = self._window, now - self._window_start
            self._window, self._window_start = Counter(), now
        log.info(
            "mesh pre-check dropped %d message(s) in %.0f s: %s",
            sum(counts.values()),
            elapsed,
            ", ".join(f"{reason} {counts[reason]}" for reason in REASONS if counts[reason]),
        )
