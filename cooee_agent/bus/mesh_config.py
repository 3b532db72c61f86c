"""The settings of one COOEE mesh node; the defaults are the production ones but the listen address.

A node joins all of ``topics`` (default: the four COOEE topics) from the start, and so relays
them: gossipsub forwards only topics a node has joined. It may also publish to the topics of
``publish_only`` without joining them (an agent's availability: ``agent.wiring.mesh_config``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cooee_agent.bus.dht import DhtSettings
from cooee_agent.bus.limits import RateLimit
from cooee_agent.protocol.kinds import TOPICS


@dataclass(frozen=True, slots=True)
class MeshConfig:
    """Everything a node needs; the defaults are the production ones except the listen address."""

    state_dir: Path
    listen: tuple[str, ...] = ("/ip4/0.0.0.0/tcp/4001",)
    bootstrap: tuple[str, ...] = ()
    mdns: bool = False
    topics: tuple[str, ...] = TOPICS  # joined: received and relayed
    publish_only: tuple[str, ...] = ()  # published to without joining
    # Per originating peer: an honest agent sends a few messages a minute.
    originator_limit: RateLimit = field(default_factory=lambda: RateLimit(rate=20.0, burst=200.0))
    # Per directly connected peer: a relay forwards a whole cluster's traffic.
    forwarder_limit: RateLimit = field(default_factory=lambda: RateLimit(rate=1000.0, burst=5000.0))
    heartbeat_interval: float = 1.0
    send_queue_size: int = 4096
    # Also bounded in bytes: 32 messages of the 64 KB maximum. A Leader with 254 agents holds
    # at most 512 MB for peers that read slowly, and a flood relayed to them costs no more.
    send_queue_bytes: int = 2 * 1024 * 1024
    subscription_queue_size: int = 4096
    # go-libp2p-pubsub's defaults; why they suit a cluster of 254 hosts: docs/PROTOCOL.md §8.
    degree: int = 6
    degree_low: int = 5
    degree_high: int = 12
    # A PRUNE names up to px_peers other peers to dial (followed from bootstrap peers only).
    # Off by default: docs/PROTOCOL.md §8 says what it cost at 50 agents.
    peer_exchange: bool = False
    px_peers: int = 4
    redial_base: float = 0.5
    redial_cap: float = 30.0
    dial_timeout: float = 10.0
    # Kademlia on the same host (bus.dht); None runs none. The node then needs record rules.
    dht: DhtSettings | None = None
