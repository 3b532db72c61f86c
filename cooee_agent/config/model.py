"""The agent's configuration as typed values, with the default of every key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cooee_agent.config.paths import DEFAULT_STATE_DIR

PRODUCTION_LISTEN = "/ip4/0.0.0.0/tcp/4001"
# Dev mode and tests stay on loopback; port 0 lets several agents share one machine.
DEV_LISTEN = "/ip4/127.0.0.1/tcp/0"
DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
DEFAULT_INTERVAL = 30.0


@dataclass(frozen=True, slots=True)
class LeaderConfig:
    """The Leader(s) this agent seals its enrolment to; several keys while one is rotated out."""

    keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MeshConfig:
    listen: str = PRODUCTION_LISTEN
    bootstrap: tuple[str, ...] = ()
    mdns: bool = False
    # Join (and so relay) the availability topic, as the Leader does: for a host that carries
    # other agents' heartbeats to the Leader. Others publish theirs without joining it.
    relay_availability: bool = False
    # Follow the peers a bootstrap peer names when it prunes us: off by default, for what it
    # costs in py-libp2p 0.8.1 (docs/PROTOCOL.md §8).
    peer_exchange: bool = False


@dataclass(frozen=True, slots=True)
class HeartbeatConfig:
    interval: float = DEFAULT_INTERVAL
    jitter: float = 0.2
    offline_after: int = 3

    @property
    def offline_timeout(self) -> float:
        """Seconds of silence after which the Leader marks a host offline."""
        return self.interval * self.offline_after

    def delay(self, unit: float) -> float:
        """The wait before the next heartbeat, for ``unit`` drawn uniformly from [0, 1)."""
        return self.interval * (1.0 + self.jitter * (2.0 * unit - 1.0))


@dataclass(frozen=True, slots=True)
class OllamaConfig:
    host: str = DEFAULT_OLLAMA_HOST


@dataclass(frozen=True, slots=True)
class Config:
    state_dir: Path = DEFAULT_STATE_DIR
    log_level: str = "info"
    # A join token is a credential: keep it out of reprs (and so out of logs and tracebacks).
    join_token: str | None = field(default=None, repr=False)
    degraded_threshold: float = 600.0
    leader: LeaderConfig = field(default_factory=LeaderConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    ollama: OllamaConfig = field(default_factory=OllamaConfig)
    source: Path | None = None  # the file it came from; None when every value is a default
