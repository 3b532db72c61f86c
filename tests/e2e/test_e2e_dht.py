"""The DHT backbone with real processes on 127.0.0.1: a Leader and five agents running Kademlia
on their mesh hosts. Every agent resolves every other agent's token with ``resolve --mesh``, the
same answer as the Leader's registry gives; then the Leader is SIGKILLed and they still do."""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

import pytest
from e2eharness import Agent, World
from process_support import ENTRY, cli, until

AGENTS = 5

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def start_dht_leader(world: World) -> None:
    """``leader serve --dht`` on the world's port (fast table refreshes for a test)."""
    addrs_file = world.leader_dir / "leader.addrs"
    addrs_file.unlink(missing_ok=True)
    argv = [sys.executable, "-c", ENTRY, "leader", "serve", "--state-dir", str(world.leader_dir)]
    argv += ["--listen", f"/ip4/127.0.0.1/tcp/{world.leader_port}", "--dht", "--dht-refresh", "1"]
    world.leader = world.spawn("leader", argv, world.tmp / "leader.stderr", {})
    leader = world.leader

    def addrs() -> list[str] | None:
        assert leader.alive, f"leader serve exited early:\n{leader.tail()}"
        return addrs_file.read_text().split() if addrs_file.exists() else None

    world.leader_addr = until(addrs, "leader.addrs")[0]


def dht_agent(world: World, name: str) -> Agent:
    agent = world.agent(name, interval=2, log_level="info")
    agent.known_addr()  # a fixed port, so resolve --mesh finds its local agent
    text = agent.config.read_text()
    agent.config.write_text(text.replace("[mesh]\n", "[mesh]\ndht = true\ndht_refresh = 1\n"))
    return agent


def resolve(args: list[str]) -> dict[str, Any]:
    result = cli("resolve", *args, "--json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def tokens_of(agent: Agent) -> list[str]:
    assignment = json.loads((agent.state_dir / "assignment.json").read_text())["assignment"]
    assert "read_key" in assignment, "the assignment carries no read key"
    return [slot["token"] for slot in assignment["slots"]]


def everyone_resolves_everyone(agents: list[Agent], expected: dict[str, dict[str, Any]]) -> None:
    for asker in agents:
        for token, answer in expected.items():
            got = until(
                lambda a=asker, t=token: _mesh(a, t),
                f"{asker.name} resolving {token} over the DHT",
                timeout=60,
            )
            assert got == answer, (asker.name, token)


def _mesh(agent: Agent, token: str) -> dict[str, Any] | None:
    result = cli("resolve", token, "--mesh", "--json", "--config", str(agent.config))
    return dict(json.loads(result.stdout)) if result.returncode == 0 else None


def test_every_agent_resolves_every_token_over_the_dht_with_the_leader_down(world: World) -> None:
    start_dht_leader(world)
    agents = [dht_agent(world, f"dht-{n}") for n in range(AGENTS)]
    for agent in agents:
        agent.start()
    for agent in agents:
        agent.enrolled()
    tokens = [token for agent in agents for token in tokens_of(agent)]
    assert len(tokens) >= AGENTS
    # The registry's answer, on the Leader's host, is what the DHT must give.
    expected = {t: resolve([t, "--state-dir", str(world.leader_dir)]) for t in tokens}

    everyone_resolves_everyone(agents, expected)

    assert world.leader is not None
    world.leader.signal(signal.SIGKILL)
    everyone_resolves_everyone(agents, expected)
    for agent in agents:
        assert agent.process is not None and agent.process.alive, (
            agent.process and agent.process.tail()
        )

    # A token of a host nobody has: said plainly, exit 1.
    from cooee_agent.identity import token as codec

    missing = cli("resolve", codec.encode(1, 999, 0), "--mesh", "--config", str(agents[0].config))
    assert missing.returncode == 1
    assert "holds no record for /cooee/host/999" in missing.stderr, missing.stderr
