"""What a Leader with more agents than its mesh holds needs from gossipsub, on real py-libp2p
nodes on 127.0.0.1: the Leader's degree is set to 1, so three of four agents are pruned, as 50
agents are by D_hi = 12. The tests of flood publishing, of the pruner's backoff and of whom
peer exchange is taken from, and of holding messages for new peers only, each fail with
their patch of libp2p_patches removed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from node_support import on_node, until

from cooee_agent.agent.reach import ReachWatch
from cooee_agent.agent.wiring import mesh_config
from cooee_agent.bus import libp2p_patches
from cooee_agent.bus.mesh_config import MeshConfig
from cooee_agent.bus.mesh_transport import MeshTransport, multiaddrs_of
from cooee_agent.config import parse_config
from cooee_agent.protocol.kinds import TOPIC_AVAILABILITY, TOPIC_ENROL, TOPICS

AGENTS = 4

pytestmark = pytest.mark.timeout(180)


# The Leader keeps one mesh peer per topic; so would agents, but they have only the Leader.
SMALL_MESH = {"degree": 1, "degree_low": 1, "degree_high": 1}


def star(nodes: Callable[..., MeshTransport], *, px: bool) -> tuple[MeshTransport, list[Any]]:
    """A Leader and AGENTS agents that bootstrap to it, once the Leader has pruned its mesh."""
    leader = nodes("leader", peer_exchange=px, **SMALL_MESH)
    agents = [
        nodes(f"agent{n}", tuple(multiaddrs_of(leader)), peer_exchange=px, **SMALL_MESH)
        for n in range(AGENTS)
    ]
    until(
        lambda: len(leader.topic_peers(TOPIC_ENROL)) == AGENTS,
        "every agent on the Leader's enrol topic",
    )
    until(lambda: len(leader.mesh_peers(TOPIC_ENROL)) <= 1, "the Leader's mesh pruned to D")
    until(
        lambda: sum(leader.peer_id not in a.mesh_peers(TOPIC_ENROL) for a in agents) >= AGENTS - 1,
        "the PRUNEs to reach the agents",
    )
    return leader, agents


def test_an_agent_the_leader_pruned_still_reaches_it(nodes: Callable[..., MeshTransport]) -> None:
    leader, agents = star(nodes, px=False)
    inbox = leader.subscribe(TOPIC_ENROL)
    for n, agent in enumerate(agents):
        agent.publish(TOPIC_ENROL, b"from agent %d" % n)
    got: set[bytes] = set()
    deadline = time.monotonic() + 20
    while len(got) < AGENTS and time.monotonic() < deadline:
        message = inbox.get(timeout=0.1)
        if message is not None:
            got.add(message.data)
    assert got == {b"from agent %d" % n for n in range(AGENTS)}


def test_the_leader_backs_off_from_every_agent_it_pruned(
    nodes: Callable[..., MeshTransport],
) -> None:
    leader, agents = star(nodes, px=False)
    in_mesh = set(leader.mesh_peers(TOPIC_ENROL))
    pruned = [a.peer_id for a in agents if a.peer_id not in in_mesh]
    assert len(pruned) == AGENTS - 1

    def held_back(pubsub: Any, topic: str) -> dict[str, tuple[bool, bool]]:
        router = pubsub.router
        return {
            p.to_base58(): (
                router._check_back_off(p, topic),
                libp2p_patches.graft_allowed(router, p, topic),
            )
            for p in pubsub.peer_topics.get(topic, ())
        }

    state = on_node(leader, held_back, TOPIC_ENROL, sync=True)
    # In backoff (a GRAFT from it is refused), and not to be grafted by the Leader either.
    assert {p: state[p] for p in pruned} == {p: (True, False) for p in pruned}


def test_pruned_agents_are_told_of_each_other_and_connect(
    nodes: Callable[..., MeshTransport],
) -> None:
    leader, agents = star(nodes, px=True)
    ids = {a.peer_id for a in agents}

    def agents_that_met_another() -> int:
        return sum(bool((ids - {a.peer_id}) & set(a.peers())) for a in agents)

    # Each pruned agent dials the agents its PRUNE names (they bootstrapped to the Leader only).
    until(lambda: agents_that_met_another() >= AGENTS - 1, "agents connected to each other")
    assert leader.alive


def test_peer_exchange_is_followed_only_from_a_bootstrap_peer(
    nodes: Callable[..., MeshTransport],
) -> None:
    leader = nodes("leader")
    stranger = nodes("stranger")
    target = nodes("target")
    agent = nodes("agent", tuple(multiaddrs_of(leader)), peer_exchange=True)
    until(lambda: leader.peer_id in agent.peers(), "the agent connected to its Leader")

    async def prune_naming_target(pubsub: Any, sender: str) -> None:
        from libp2p.peer.id import ID
        from libp2p.pubsub.pb import rpc_pb2

        record = target._node._host.get_peerstore().get_local_record()
        if record is None:
            from libp2p.peer.peerstore import env_to_send_in_RPC

            envelope_bytes, _ = env_to_send_in_RPC(target._node._host)
        else:
            envelope_bytes = record.marshal_envelope()
        info = rpc_pb2.PeerInfo(
            peerID=ID.from_base58(target.peer_id).to_bytes(), signedPeerRecord=envelope_bytes
        )
        prune = rpc_pb2.ControlPrune(topicID=TOPIC_ENROL, peers=[info], backoff=60)
        await pubsub.router.handle_prune(prune, ID.from_base58(sender))

    on_node(agent, prune_naming_target, stranger.peer_id)
    time.sleep(2.0)
    assert target.peer_id not in agent.peers(), "PX from a stranger was followed"
    on_node(agent, prune_naming_target, leader.peer_id)
    until(lambda: target.peer_id in agent.peers(), "PX from the Leader followed")


def test_an_agent_publishes_availability_without_joining_or_relaying_it(
    nodes: Callable[..., MeshTransport],
) -> None:
    leader = nodes("leader")
    agent_config = MeshConfig(
        state_dir=Path("unused"),
        topics=tuple(t for t in TOPICS if t != TOPIC_AVAILABILITY),
        publish_only=(TOPIC_AVAILABILITY,),
    )
    options = {"topics": agent_config.topics, "publish_only": agent_config.publish_only}
    sender = nodes("sender", tuple(multiaddrs_of(leader)), **options)
    other = nodes("other", tuple(multiaddrs_of(leader)), **options)
    inbox = leader.subscribe(TOPIC_AVAILABILITY)
    until(lambda: leader.peer_id in sender.topic_peers(TOPIC_AVAILABILITY), "the Leader joined")
    assert sender.peer_id not in leader.topic_peers(TOPIC_AVAILABILITY)
    sender.publish(TOPIC_AVAILABILITY, b"heartbeat")
    message = inbox.get(timeout=20)
    assert message is not None and message.data == b"heartbeat"
    assert other.peer_id not in leader.mesh_peers(TOPIC_AVAILABILITY)


def test_the_agent_configuration_decides_whether_it_relays_availability(tmp_path: Path) -> None:
    base = f'state_dir = "{tmp_path}"\n[leader]\nkeys = []\n'
    plain = mesh_config(parse_config(base, env={}))
    assert TOPIC_AVAILABILITY not in plain.topics
    assert plain.publish_only == (TOPIC_AVAILABILITY,)
    relay = mesh_config(parse_config(base + "[mesh]\nrelay_availability = true\n", env={}))
    assert relay.topics == TOPICS and relay.publish_only == ()


def test_repair_announces_subscriptions_again(nodes: Callable[..., MeshTransport]) -> None:
    leader = nodes("leader")
    agent = nodes("agent", tuple(multiaddrs_of(leader)))
    until(lambda: agent.peer_id in leader.topic_peers(TOPIC_ENROL), "the agent's subscription")

    def forget_agent(pubsub: Any, peer: str) -> None:
        for peers in pubsub.peer_topics.values():
            peers.discard(next(p for p in list(peers) if p.to_base58() == peer))

    on_node(leader, forget_agent, agent.peer_id, sync=True)
    assert agent.peer_id not in leader.topic_peers(TOPIC_ENROL)
    done = agent.repair(TOPIC_ENROL)
    assert "re-announced" in done
    until(lambda: agent.peer_id in leader.topic_peers(TOPIC_ENROL), "the subscription again")


def test_an_agent_nobody_hears_says_so_and_repairs(
    nodes: Callable[..., MeshTransport], caplog: pytest.LogCaptureFixture
) -> None:
    dead_leader = nodes("dead")
    addrs = tuple(multiaddrs_of(dead_leader))
    dead_leader.close()
    agent = nodes("agent", addrs)
    watch = ReachWatch(limit=3)
    with caplog.at_level(logging.WARNING, logger="cooee_agent.agent.reach"):
        assert [watch.after_heartbeat(agent) for _ in range(3)] == [False, False, True]
    assert watch.repairs == 1
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "nobody hears them" in text and "redialling" in text

    leader = nodes("leader")
    heard = nodes("heard", tuple(multiaddrs_of(leader)))
    until(lambda: heard.topic_peers(TOPIC_AVAILABILITY), "the Leader on the availability topic")
    healthy = ReachWatch(limit=1)
    assert [healthy.after_heartbeat(heard) for _ in range(3)] == [False] * 3
    assert healthy.repairs == 0


def test_idontwant_goes_out_for_large_messages_only(nodes: Callable[..., MeshTransport]) -> None:
    receiver = nodes("receiver")
    relay = nodes("relay", tuple(multiaddrs_of(receiver)))
    sender = nodes("sender", tuple(multiaddrs_of(relay)))
    inbox = receiver.subscribe(TOPIC_ENROL)
    until(lambda: receiver.peer_id in relay.mesh_peers(TOPIC_ENROL), "the relay's mesh")
    until(lambda: relay.peer_id in sender.topic_peers(TOPIC_ENROL), "the sender's topic peer")
    sent: list[int] = []

    def count_idontwant(pubsub: Any) -> None:
        router = pubsub.router
        original = router.emit_idontwant

        async def counting(msg_ids: list[bytes], to_peer: Any) -> None:
            sent.append(len(msg_ids))
            await original(msg_ids, to_peer)

        router.emit_idontwant = counting

    on_node(relay, count_idontwant, sync=True)
    small, large = b"s" * 1500, b"L" * libp2p_patches.IDONTWANT_MIN_BYTES
    sender.publish(TOPIC_ENROL, small)
    assert (m := inbox.get(timeout=20)) is not None and m.data == small
    assert sent == []
    sender.publish(TOPIC_ENROL, large)
    assert (m := inbox.get(timeout=20)) is not None and m.data == large
    until(lambda: sent, "an IDONTWANT for the large message")


def test_messages_wait_only_for_peers_still_being_identified(
    nodes: Callable[..., MeshTransport],
) -> None:
    leader = nodes("leader")
    agent = nodes(
        "agent",
        tuple(multiaddrs_of(leader)),
        topics=tuple(t for t in TOPICS if t != TOPIC_AVAILABILITY),
        publish_only=(TOPIC_AVAILABILITY,),
    )
    relay = nodes("relay", tuple(multiaddrs_of(leader)))
    until(lambda: relay.peer_id in leader.topic_peers(TOPIC_AVAILABILITY), "the relay joined")
    time.sleep(libp2p_patches.PENDING_GRACE_S + 0.5)  # the agent is no longer new

    def held_for(pubsub: Any, peer: str) -> int:
        pending = pubsub.router._pending_messages
        return sum(len(queue) for p, queue in pending.items() if p.to_base58() == peer)

    for n in range(150):  # more than 0.8.1's 100 per peer
        leader.publish(TOPIC_AVAILABILITY, b"%d" % n)
    assert on_node(leader, held_for, agent.peer_id, sync=True) <= 1
