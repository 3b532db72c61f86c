"""A rack's worth of agents on one Leader, all started at once: the scale test and the cold-start
benchmark drive the same thing. Counts come from the Leader's own registry (``leader list
--json``) and the agents' own status files, never from logs."""

from __future__ import annotations

import json
import time
from typing import Any

from e2eharness import Agent, World
from process_support import until


class Cluster:
    """``count`` agents named ``agent-NN`` bootstrapping to the World's Leader."""

    def __init__(self, world: World, count: int, *, interval: int = 2) -> None:
        self.world = world
        self.count = count
        self.interval = interval
        self.agents: list[Agent] = []

    @property
    def hostnames(self) -> list[str]:
        return [agent.hostname for agent in self.agents]

    def start(self, *, timeout: float) -> list[tuple[float, int]]:
        """Start the Leader, then every agent at once; wait until all are online at the Leader.
        Returns the curve: (seconds since the agents started, hosts online) at each poll."""
        self.world.start_leader()
        self.agents = [
            self.world.agent(f"agent-{n:02d}", interval=self.interval, log_level="info")
            for n in range(self.count)
        ]
        started = time.monotonic()
        for agent in self.agents:
            agent.start()
        curve: list[tuple[float, int]] = []
        wanted = set(self.hostnames)

        def all_online() -> bool:
            self.check_alive()
            up = {h["hostname"] for h in self.world.hosts() if h["online"]} & wanted
            curve.append((round(time.monotonic() - started, 2), len(up)))
            return len(up) == len(wanted)

        until(all_online, f"all {self.count} agents online at the Leader", timeout)
        return curve

    def check_alive(self) -> None:
        dead = [a for a in self.agents if a.process is not None and not a.process.alive]
        assert not dead, f"agent {dead[0].name} exited:\n{dead[0].process.tail()}"  # type: ignore[union-attr]

    def leader_view(self) -> dict[str, dict[str, Any]]:
        """Each agent's host as the Leader's registry has it, by hostname."""
        wanted = set(self.hostnames)
        return {h["hostname"]: h for h in self.world.hosts() if h["hostname"] in wanted}

    def sent(self) -> dict[str, int]:
        """The seq of each agent's last heartbeat sent, from its own status.json."""
        sent = {}
        for agent in self.agents:
            status = json.loads((agent.state_dir / "status.json").read_text())
            sent[agent.hostname] = int((status.get("last_heartbeat") or {}).get("seq") or 0)
        return sent

    def heard_up_to(self, sent: dict[str, int], *, timeout: float) -> dict[str, dict[str, Any]]:
        """Wait until the Leader has applied, for every agent, a seq at least ``sent``'s;
        returns the Leader's view then."""

        def caught_up() -> dict[str, dict[str, Any]] | None:
            view = self.leader_view()
            late = [h for h, seq in sent.items() if (view.get(h, {}).get("seq") or 0) < seq]
            return None if late else view

        return until(caught_up, "the Leader to hear every agent's latest heartbeat", timeout)
