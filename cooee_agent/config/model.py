"""The agent's configuration as typed values: the default, type and bounds of every key.

Each table is a msgspec Struct that refuses keys it does not know. The bounds (``Meta``) are
checked when a file is decoded, not when a value is built in code: dev mode and the tests run
sub-second heartbeats. What a type cannot say (a multiaddr, a URL) is in ``checks``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import msgspec

from cooee_agent.config.paths import DEFAULT_STATE_DIR
from cooee_agent.protocol.records import JoinToken  # the Leader's rule, so both refuse alike

PRODUCTION_LISTEN = "/ip4/0.0.0.0/tcp/4001"
# Dev mode and tests stay on loopback; port 0 lets several agents share one machine.
DEV_LISTEN = "/ip4/127.0.0.1/tcp/0"
DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
DEFAULT_INTERVAL = 30.0

Interval = Annotated[float, msgspec.Meta(ge=1, le=3600)]
Jitter = Annotated[float, msgspec.Meta(ge=0, le=0.5)]
DhtRefresh = Annotated[float, msgspec.Meta(ge=0.5, le=3600)]
OfflineAfter = Annotated[int, msgspec.Meta(ge=1, le=100)]
DegradedThreshold = Annotated[float, msgspec.Meta(gt=0, le=7 * 86400)]


class Table(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A table of the file (or its top level): exactly these keys, each optional.

    Subclasses inherit the options; they say ``frozen=True`` again for mypy's sake.
    """


class LeaderConfig(Table, frozen=True):
    """The Leader(s) this agent seals its enrolment to; several keys while one is rotated out."""

    keys: tuple[str, ...] = ()


class MeshConfig(Table, frozen=True):
    listen: str = PRODUCTION_LISTEN
    bootstrap: tuple[str, ...] = ()
    mdns: bool = False
    # Join (and so relay) the availability topic, as the Leader does: for a host that carries
    # other agents' heartbeats to the Leader. Others publish theirs without joining it.
    relay_availability: bool = False
    # Follow the peers a bootstrap peer names when it prunes us: off by default, for what it
    # costs in py-libp2p 0.8.1 (docs/PROTOCOL.md §8).
    peer_exchange: bool = False
    # Run the Kademlia DHT on the mesh's host: keep this host's record in it and serve others'
    # (resolve --mesh works while the Leader is down). Needs a Leader that runs it too.
    dht: bool = False
    dht_refresh: DhtRefresh = 60.0  # seconds between routing-table refreshes


class HeartbeatConfig(Table, frozen=True):
    interval: Interval = DEFAULT_INTERVAL
    jitter: Jitter = 0.2
    offline_after: OfflineAfter = 3

    @property
    def offline_timeout(self) -> float:
        """Seconds of silence after which the Leader marks a host offline."""
        return self.interval * self.offline_after

    def delay(self, unit: float) -> float:
        """The wait before the next heartbeat, for ``unit`` drawn uniformly from [0, 1)."""
        return self.interval * (1.0 + self.jitter * (2.0 * unit - 1.0))


class OllamaConfig(Table, frozen=True):
    host: str = DEFAULT_OLLAMA_HOST


class Config(Table, frozen=True):
    state_dir: Path = DEFAULT_STATE_DIR
    log_level: str = "info"
    join_token: JoinToken | None = None  # a credential: kept out of reprs, see below
    degraded_threshold: DegradedThreshold = 600.0
    leader: LeaderConfig = msgspec.field(default_factory=LeaderConfig)
    mesh: MeshConfig = msgspec.field(default_factory=MeshConfig)
    heartbeat: HeartbeatConfig = msgspec.field(default_factory=HeartbeatConfig)
    ollama: OllamaConfig = msgspec.field(default_factory=OllamaConfig)
    source: Path | None = None  # the file it came from; None when every value is a default

    # A join token is a credential: keep it out of reprs (and so out of logs and tracebacks),
    # rich's included.
    def __rich_repr__(self) -> Any:
        for name in self.__struct_fields__:
            if name not in NOT_SHOWN:
                yield name, getattr(self, name)

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self.__rich_repr__())
        return f"{type(self).__name__}({shown})"


NOT_SHOWN = frozenset({"join_token"})
# Config fields that are not keys of the file.
NOT_IN_FILE = frozenset({"source"})
