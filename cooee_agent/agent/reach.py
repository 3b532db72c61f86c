"""Whether the agent's heartbeats still have somewhere to go, and mending it when not.

An agent flood-publishes its heartbeats to every peer that joined the availability topic (the
Leader, and any relay: docs/PROTOCOL.md §8). When, for UNREACHED_HEARTBEATS heartbeats in a
row, no such peer is known, nobody hears them: the agent says so in its log and asks the
transport to repair (announce its subscriptions again, re-join the topic if it relays it,
redial the bootstrap peers at once). The Leader, for its part, marks the host offline.
"""

from __future__ import annotations

import logging

from cooee_agent.agent.publishing import topic_peers
from cooee_agent.bus.transport import Transport
from cooee_agent.errors import CooeeError
from cooee_agent.protocol.kinds import TOPIC_AVAILABILITY

log = logging.getLogger(__name__)

UNREACHED_HEARTBEATS = 3


class ReachWatch:
    """Counts heartbeats sent while no peer had joined the availability topic; repairs after
    ``limit`` in a row. ``repairs`` says how often it had to."""

    def __init__(self, limit: int = UNREACHED_HEARTBEATS, topic: str = TOPIC_AVAILABILITY) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self.limit = limit
        self.topic = topic
        self.unreached = 0
        self.repairs = 0

    def after_heartbeat(self, transport: Transport) -> bool:
        """Note one heartbeat; returns True when it repaired the transport. Never raises."""
        if topic_peers(transport, self.topic) > 0:
            self.unreached = 0
            return False
        self.unreached += 1
        if self.unreached < self.limit:
            return False
        log.warning(
            "no peer has joined %s for %d heartbeats in a row: nobody hears them;"
            " repairing the mesh (peers connected: %d)",
            self.topic,
            self.unreached,
            len(_peers(transport)),
        )
        self.unreached = 0
        self.repairs += 1
        repair = getattr(transport, "repair", None)
        if repair is None:
            return False
        try:
            log.warning("mesh repair: %s", repair(self.topic))
        except CooeeError as error:
            log.warning("mesh repair failed: %s", error)
            return False
        return True


def _peers(transport: Transport) -> list[str]:
    try:
        return transport.peers()
    except CooeeError:
        return []
