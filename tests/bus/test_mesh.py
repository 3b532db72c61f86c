"""The py-libp2p mesh as separate processes on 127.0.0.1: delivery, relaying, redial, limits."""

from __future__ import annotations

import base64
import json
import time

import pytest
from meshharness import MESH_TIMEOUT, Spawner, publish_until_received

from cooee_agent.bus.transport import MAX_MESSAGE_BYTES
from cooee_agent.protocol.kinds import TOPIC_AVAILABILITY, TOPIC_ENROL

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_three_nodes_deliver_to_every_subscriber_and_relay_through_the_hub(spawn: Spawner) -> None:
    hub = spawn.py("hub", subscribe=(TOPIC_ENROL,))
    left = spawn.py("left", bootstrap=(hub.addr,), subscribe=(TOPIC_ENROL,))
    right = spawn.py("right", bootstrap=(hub.addr,), subscribe=(TOPIC_ENROL,))
    hub.wait_topic_peers(TOPIC_ENROL, [left.peer_id, right.peer_id])

    publish_until_received(hub, [left, right], TOPIC_ENROL, b'{"n":"from hub"}')
    # left and right know only the hub: this one is relayed.
    publish_until_received(left, [hub, right], TOPIC_ENROL, b'{"n":"from left"}')
    reply = right.peers()
    assert reply["peers"] == [hub.peer_id]
    assert reply["protocols"] == {hub.peer_id: "/meshsub/1.2.0"}
    message = next(m for m in right.messages() if m["data_b64"] == _b64(b'{"n":"from left"}'))
    assert message["from"] == left.peer_id  # the originator, not the relay
    assert not left.received(b'{"n":"from left"}')  # no echo of one's own message


def test_a_node_that_only_relays_carries_messages_between_two_others(spawn: Spawner) -> None:
    relay = spawn.py("relay")  # the application subscribes to nothing: the node still relays
    sender = spawn.py("sender", bootstrap=(relay.addr,))
    receiver = spawn.py("receiver", bootstrap=(relay.addr,), subscribe=(TOPIC_AVAILABILITY,))
    relay.wait_topic_peers(TOPIC_AVAILABILITY, [sender.peer_id, receiver.peer_id])

    publish_until_received(sender, [receiver], TOPIC_AVAILABILITY, b'{"seq":1}')
    assert receiver.peers()["peers"] == [relay.peer_id]
    assert relay.messages() == []


def test_a_node_redials_its_bootstrap_peer_after_that_peer_restarts(spawn: Spawner) -> None:
    leader = spawn.py("leader", subscribe=(TOPIC_ENROL,))
    agent = spawn.py("agent", bootstrap=(leader.addr,))
    leader.wait_topic_peers(TOPIC_ENROL, [agent.peer_id])
    publish_until_received(agent, [leader], TOPIC_ENROL, b'{"try":1}')

    port, first_id = leader.port, leader.peer_id
    leader.kill()
    _wait_until(lambda: agent.peers()["peers"] == [], "agent notices the leader is gone")
    time.sleep(2.0)  # let some redials fail, filling libp2p's 60 s negative dial cache

    leader = spawn.py("leader-again", port=port, subscribe=(TOPIC_ENROL,), state="leader")
    assert leader.peer_id == first_id  # the peer key persisted in the state directory
    leader.wait_topic_peers(TOPIC_ENROL, [agent.peer_id], timeout=30.0)
    publish_until_received(agent, [leader], TOPIC_ENROL, b'{"try":2}')


def test_messages_over_64_kib_are_refused_by_sender_and_dropped_by_receiver(
    spawn: Spawner,
) -> None:
    receiver = spawn.py("receiver", subscribe=(TOPIC_ENROL,))
    sender = spawn.py("sender", bootstrap=(receiver.addr,))
    receiver.wait_topic_peers(TOPIC_ENROL, [sender.peer_id])

    oversized = b"x" * (MAX_MESSAGE_BYTES + 1)
    start = len(sender.events)
    sender.publish(TOPIC_ENROL, oversized)
    error = sender.wait_for(lambda e: e["event"] in ("error", "published"), 10, "reply", start)
    assert error["event"] == "error" and "65536-byte limit" in str(error["error"])

    sender.publish(TOPIC_ENROL, oversized, raw=True)  # as a hostile peer would
    largest = b"y" * MAX_MESSAGE_BYTES
    publish_until_received(sender, [receiver], TOPIC_ENROL, largest)
    time.sleep(1.0)
    assert not receiver.received(oversized)


def test_a_flooding_peer_does_not_stop_an_honest_publisher(spawn: Spawner) -> None:
    leader = spawn.py("leader", subscribe=(TOPIC_ENROL,), validator="json")
    honest = spawn.py("honest", bootstrap=(leader.addr,))
    flooder = spawn.py("flooder", bootstrap=(leader.addr,))
    leader.wait_topic_peers(TOPIC_ENROL, [honest.peer_id, flooder.peer_id])

    flooder.send(cmd="flood", topic=TOPIC_ENROL, seconds=8, size=2048)
    flooder.send(cmd="raw_publish", topic=TOPIC_ENROL, data_b64=_b64(b"\xff" * 70_000))
    wanted = [json.dumps({"n": n}).encode() for n in range(10)]
    for data in wanted:
        publish_until_received(honest, [leader], TOPIC_ENROL, data, timeout=MESH_TIMEOUT)
    flooded = flooder.wait_for(lambda e: e["event"] == "flooded", 30, "end of flood")
    assert int(flooded["sent"]) > 200  # the flood was real
    assert all(m["from"] == honest.peer_id for m in leader.messages())  # no garbage delivered
    publish_until_received(honest, [leader], TOPIC_ENROL, b'{"after":"flood"}')


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _wait_until(condition, what: str, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting until {what}")
