"""Two live agents with one identity (a VM cloned with its state): the Leader's evidence and call.

An agent's heartbeat sequence only grows: the counter is kept in its state directory, so a
restart continues it. Two agents sharing one state each count on from the same value, and the
Leader then applies records whose seq does not exceed the last one it applied, over and over (a
later ``issued_at`` makes each newer). One such record is a restored backup or a lost counter;
``EVIDENCE`` of them within ``WINDOW_S`` is two agents, and the Leader calls an operator.
"""

from __future__ import annotations

from collections import OrderedDict, deque

EVIDENCE = 3
WINDOW_S = 600.0
# Hosts followed at once (every host_id fits); the least recently heard is forgotten first.
HOSTS_FOLLOWED = 1024
CALL_REASON = "two-agents-one-key"


class CloneWatch:
    """Per host, the last seq applied and when it went backwards; one thread uses it."""

    def __init__(self) -> None:
        self._last: OrderedDict[int, int] = OrderedDict()
        self._backwards: dict[int, deque[float]] = {}

    def applied(self, host_id: int, seq: int, now: float) -> bool:
        """Note an applied record; True when the host shows two live agents (call an operator)."""
        last = self._last.pop(host_id, None)
        self._last[host_id] = seq
        while len(self._last) > HOSTS_FOLLOWED:
            gone, _ = self._last.popitem(last=False)
            self._backwards.pop(gone, None)
        if last is None or seq > last:
            return False
        times = self._backwards.setdefault(host_id, deque(maxlen=EVIDENCE))
        times.append(now)
        return len(times) == EVIDENCE and now - times[0] <= WINDOW_S
