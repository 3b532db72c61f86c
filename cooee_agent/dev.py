"""Dev mode: a throw-away Leader and this host's agent in one process, on 127.0.0.1 only.

A newcomer sees the whole flow (discovery, sealed enrolment over the mesh, assignment, tokens,
heartbeats) without a cluster. Nothing listens beyond loopback and mDNS stays off.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cooee_agent.config import (
    DEV_LISTEN,
    Config,
    HeartbeatConfig,
    LeaderConfig,
    MeshConfig,
    OllamaConfig,
    parse_config,
)
from cooee_agent.errors import CooeeError
from cooee_agent.files import make_directory

log = logging.getLogger(__name__)

LEADER_LISTEN = "/ip4/127.0.0.1/tcp/0"


@dataclass(frozen=True, slots=True)
class HostView:
    """What the Leader's registry says about the dev host."""

    host_id: int
    state: str
    seq: int | None
    last_seen: str | None


def dev_config(
    agent_dir: Path, bundle: str, bootstrap: list[str], interval: float, env: Mapping[str, str]
) -> Config:
    """The agent's configuration in dev mode: loopback, no mDNS, a short heartbeat."""
    defaults = parse_config("", env=env, dev=True)  # picks up $OLLAMA_HOST like run does
    return Config(
        state_dir=agent_dir,
        log_level=defaults.log_level,
        leader=LeaderConfig(keys=(bundle,)),
        mesh=MeshConfig(listen=DEV_LISTEN, bootstrap=tuple(bootstrap), mdns=False),
        heartbeat=HeartbeatConfig(interval=interval, jitter=defaults.heartbeat.jitter),
        ollama=OllamaConfig(host=defaults.ollama.host),
    )


class DevCluster:
    """A Leader node and an agent daemon, each on its own thread; ``close()`` stops both."""

    def __init__(self, root: Path, *, interval: float = 5.0) -> None:
        from cooee_agent.agent.wiring import production_daemon
        from cooee_agent.leader.node import LeaderNode
        from cooee_agent.leader.registry import REGISTRY_FILE, Registry
        from cooee_agent.protocol.keys import generate_leader_keys, load_leader_keys

        self.root = root
        self._stop = threading.Event()
        leader_dir = root / "leader"
        make_directory(leader_dir)
        try:
            load_leader_keys(leader_dir)
        except Exception:
            generate_leader_keys(leader_dir)
        self.leader = LeaderNode(leader_dir, listen=[LEADER_LISTEN])
        self.leader_error: str | None = None
        self._leader_thread = threading.Thread(
            target=self._run_leader, name="dev-leader", daemon=True
        )
        self._leader_thread.start()
        config = dev_config(
            root / "agent", self.leader.bundle_text, self.leader.addrs, interval, os.environ
        )
        self.agent = production_daemon(config, None)
        self.agent_exit: int | None = None
        self._agent_thread = threading.Thread(target=self._run_agent, name="dev-agent", daemon=True)
        self._agent_thread.start()
        # A connection of its own: the registry is read here while the Leader writes it.
        self._registry = Registry(leader_dir / REGISTRY_FILE)

    def _run_leader(self) -> None:
        try:
            self.leader.run(self._stop)
        except CooeeError as error:
            log.error("the dev Leader stopped: %s", error)
            self.leader_error = str(error)

    @property
    def leader_alive(self) -> bool:
        return self._leader_thread.is_alive()

    def _run_agent(self) -> None:
        try:
            self.agent_exit = self.agent.run(install_signals=False)
        except Exception:
            log.exception("the dev agent stopped with an error")
            self.agent_exit = 1

    @property
    def agent_alive(self) -> bool:
        return self._agent_thread.is_alive()

    def agent_status(self) -> dict[str, Any]:
        return self.agent.status()

    def host(self, host_id: int) -> HostView | None:
        view = self._registry.host_by_id(host_id)
        if view is None:
            return None
        data = view.to_dict()
        return HostView(
            host_id=host_id,
            state=str(data.get("state") or "unknown"),
            seq=data.get("seq"),
            last_seen=data.get("last_seen"),
        )

    def close(self) -> None:
        self.agent.stop()
        self._agent_thread.join(timeout=15)
        self._stop.set()
        self._leader_thread.join(timeout=10)
        self.leader.close()
        self._registry.close()
