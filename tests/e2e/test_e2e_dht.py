"""The DHT backbone with real processes on 127.0.0.1: a Leader and five agents running Kademlia
on their mesh hosts. Every agent resolves every other agent's token with ``resolve --mesh``, the
same answer as the Leader's registry gives; a hostile member (it holds the read key, as every
agent does, but not the Leader's signing key) puts forged records, which change no answer; then
the Leader is SIGKILLed and they still resolve each other."""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from e2eharness import Agent, World
from host_record_support import host_info, sealed
from process_support import ENTRY, cli, until
from pyrage import x25519

from cooee_agent.bus.dht import DhtSettings
from cooee_agent.bus.mesh_config import MeshConfig
from cooee_agent.bus.mesh_transport import MeshTransport, start_mesh
from cooee_agent.protocol.host_records import host_key

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


def everyone_resolves_everyone(
    agents: list[Agent], expected: dict[str, dict[str, Any]], *flags: str
) -> None:
    for asker in agents:
        for token, answer in expected.items():
            got = until(
                lambda a=asker, t=token: _mesh(a, t, *flags),
                f"{asker.name} resolving {token} over the DHT",
                timeout=60,
            )
            assert got == answer, (asker.name, token)


# What resolve --mesh logs (with --debug) when it starts a DHT client of its own.
OWN_NODE = "up from a node of this command's own"


def _mesh(agent: Agent, token: str, *flags: str) -> dict[str, Any] | None:
    result = cli(
        "--debug", "resolve", token, "--mesh", *flags, "--json", "--config", str(agent.config)
    )
    if result.returncode != 0:
        return None
    # Without --no-agent, the running agent answers: no node of the command's own is started.
    assert (OWN_NODE in result.stderr) == ("--no-agent" in flags), result.stderr
    return dict(json.loads(result.stdout))


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

    hostile = hostile_member(world)
    try:
        for host_id in {answer["host_id"] for answer in expected.values()}:
            hostile.dht_put(host_key(host_id), forged(host_id, agents[0]))
        everyone_resolves_everyone(agents, expected)
    finally:
        hostile.close()

    assert world.leader is not None
    world.leader.signal(signal.SIGKILL)
    everyone_resolves_everyone(agents, expected)
    # And a client node of the command's own, not its agent's node, finds the same answers.
    everyone_resolves_everyone(agents[:1], expected, "--no-agent")
    for agent in agents:
        assert agent.process is not None and agent.process.alive, (
            agent.process and agent.process.tail()
        )

    # A token of a host nobody has: said plainly, exit 1.
    from cooee_agent.identity import token as codec

    missing = cli("resolve", codec.encode(1, 999, 0), "--mesh", "--config", str(agents[0].config))
    assert missing.returncode == 1
    assert "holds no record for /cooee/host/999" in missing.stderr, missing.stderr


class _StoresAnything:
    """A hostile node's record rules: it stores and serves whatever it is given."""

    def check(self, key: str, data: bytes) -> object:
        return None

    def select(self, key: str, values: list[bytes]) -> int:
        return len(values) - 1


def hostile_member(world: World) -> MeshTransport:
    """A DHT node of the test's own on the real mesh, dialled to the Leader."""
    node = start_mesh(
        MeshConfig(
            state_dir=world.tmp / "hostile",
            listen=("/ip4/127.0.0.1/tcp/0",),
            bootstrap=(world.leader_addr,),
            redial_cap=1.0,
            dht=DhtSettings(refresh_interval=1.0),
        ),
        dht_rules=_StoresAnything(),
    )
    until(lambda: len(node.dht_peers()) >= AGENTS, "the hostile node in the DHT", timeout=60)
    return node


def forged(host_id: int, member: Agent) -> bytes:
    """A record for ``host_id`` naming another host, sealed to the cluster's read key (a member
    has it) and signed by the forger's own key, with a sequence number beyond any real one."""
    assignment = json.loads((member.state_dir / "assignment.json").read_text())["assignment"]
    read_key = x25519.Identity.from_str(assignment["read_key"]).to_public()
    info = host_info(host_id, seq=2**52, hostname="evil.example", mac="aabbccddee99")
    return sealed(info, Ed25519PrivateKey.generate(), str(read_key))
