"""Whether the agent's heartbeats still have a way to the Leader, and mending it when not.

Gossipsub relays a topic's messages along its mesh. An agent with no mesh peer on the
availability topic depends on its direct connections alone (its own messages are flood
published), and learns of nothing relayed to it. After UNMESHED_HEARTBEATS heartbeats in a row
sent in that state, the agent says so in its log and asks the transport to repair: announce its
subscriptions again, re-join the topic, redial the bootstrap peers (docs/PROTOCOL.md §9).
"""

from __future__ import annotations

import logging

from cooee_agent.agent.publishing import topic_peers
from cooee_agent.bus.transport import TOPIC_AVAILABILITY, Transport
from cooee_agent.errors import CooeeError

log = logging.getLogger(__name__)

UNMESHED_HEARTBEATS = 3


def mesh_peer_count(transport: Transport, topic: str) -> int | None:
    """The peers of the transport's mesh for ``topic``; None where the transport has no mesh."""
    mesh_peers = getattr(transport, "mesh_peers", None)
    if mesh_peers is None:
        return None
    try:
        return len(mesh_peers(topic))
    except CooeeError:
        return None


class ReachWatch:
    """Counts heartbeats sent without a mesh peer on the availability topic; repairs after
    ``limit`` in a row. ``repairs`` says how often it had to."""

    def __init__(self, limit: int = UNMESHED_HEARTBEATS, topic: str = TOPIC_AVAILABILITY) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self.limit = limit
        self.topic = topic
        self.unmeshed = 0
        self.repairs = 0

    def after_heartbeat(self, transport: Transport) -> bool:
        """Note one heartbeat; returns True when it repaired the transport. Never raises."""
        count = mesh_peer_count(transport, self.topic)
        if count is None or count > 0:
            self.unmeshed = 0
            return False
        self.unmeshed += 1
        if self.unmeshed < self.limit:
            return False
        log.warning(
            "no mesh peer on %s for %d heartbeats in a row (a publish reaches %d peer(s)"
            " directly); repairing the mesh",
            self.topic,
            self.unmeshed,
            topic_peers(transport, self.topic),
        )
        self.unmeshed = 0
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
