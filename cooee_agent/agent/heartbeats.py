"""The daemon's heartbeat: when the next one is due, and sending it, with what the last one said.

A heartbeat samples usage, builds the availability record (agent.availability_record) and
hands it to ``publish``, which signs and sends it; a failing probe or send is logged and never
raised, so the main loop goes on. The state the last record announced (``state``, ``reasons``)
is kept here for status.json, the STATUS= line and the escalation of a host that stays degraded.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from cooee_agent.agent.availability_record import Announcement, availability
from cooee_agent.agent.enrolling import iso
from cooee_agent.agent.usage import Usage, UsageProbe
from cooee_agent.config import HeartbeatConfig
from cooee_agent.discovery.model import Inventory
from cooee_agent.errors import CooeeError
from cooee_agent.protocol.records import Assignment

log = logging.getLogger(__name__)

Publish = Callable[[dict[str, Any]], None]


class Heartbeats:
    """Schedules and sends heartbeats; ``next_due`` is None until the first is asked for."""

    def __init__(
        self,
        usage_probe: UsageProbe,
        publish: Publish,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.usage_probe = usage_probe  # replaced when a reload changes the Ollama host
        self._publish = publish
        self._clock = clock
        self._wall = wall
        self._rng = rng
        self.next_due: float | None = None
        self.last: dict[str, Any] | None = None  # the last heartbeat sent, for status.json
        self.last_slots: tuple[dict[str, Any], ...] = ()  # its slots, for /metrics
        self.sent = 0  # heartbeats published since the start, for /metrics
        self.state = "available"
        self.reasons: tuple[str, ...] = ()

    # -- when ----------------------------------------------------------------------------------

    def soon(self) -> None:
        """Due at once: enrolled, or a new assignment arrived."""
        self.next_due = self._clock()

    def take_due(self, config: HeartbeatConfig) -> bool:
        """True when a heartbeat is due now; the next one is then scheduled, with jitter."""
        if self.next_due is None or self._clock() < self.next_due:
            return False
        self.reschedule(config)
        return True

    def reschedule(self, config: HeartbeatConfig) -> None:
        """The next heartbeat one (jittered) interval from now."""
        self.next_due = self._clock() + config.delay(self._rng())

    def seconds_to_next(self) -> float | None:
        return None if self.next_due is None else max(0.0, self.next_due - self._clock())

    # -- what ----------------------------------------------------------------------------------

    def send(
        self,
        assignment: Assignment,
        inventory: Inventory,
        installed: Sequence[str],
        *,
        seq: int,
        interval_s: float,
    ) -> tuple[Announcement, bool]:
        """Sample usage, build and publish one availability record; never raises.

        Returns the announcement and whether it was published."""
        try:
            usage = self.usage_probe()
        except Exception as error:  # the probe factory should not raise; if it does, degrade
            log.warning("usage probe crashed: %s", error, exc_info=True)
            usage = Usage((), (), (), gpus_probed=False)
        announcement = availability(
            assignment,
            inventory,
            usage,
            installed,
            seq=seq,
            interval_s=interval_s,
            issued_at=iso(self._wall()),
        )
        self._note_state(announcement)
        try:
            self._publish(announcement.record)
        except CooeeError as error:
            log.warning("heartbeat %d not sent: %s", seq, error)
            return announcement, False
        self.sent += 1
        self.last_slots = tuple(announcement.record["slots"])
        self.last = {
            "at": iso(self._wall()),
            "seq": seq,
            "state": announcement.state,
            "reasons": list(announcement.reasons),
        }
        log.debug("heartbeat %d: %s", seq, announcement.state)
        return announcement, True

    def _note_state(self, announcement: Announcement) -> None:
        if announcement.state != self.state or announcement.reasons != self.reasons:
            if announcement.state == "degraded":
                log.warning("degraded: %s", "; ".join(announcement.reasons))
            else:
                log.info("state %s", announcement.state)
        self.state, self.reasons = announcement.state, announcement.reasons
