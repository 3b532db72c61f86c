"""The in-process transport: same interface, limits and validation contract as the mesh."""

from __future__ import annotations

import threading

import pytest

from cooee_agent.bus.limits import RateLimit
from cooee_agent.bus.memory import MemoryBus
from cooee_agent.bus.transport import MAX_MESSAGE_BYTES, Message
from cooee_agent.errors import TransportError
from cooee_agent.protocol.kinds import TOPIC_ASSIGNMENT, TOPIC_ENROL


def test_subscribers_receive_other_peers_messages_but_not_their_own() -> None:
    bus = MemoryBus()
    agent, leader = bus.join("agent"), bus.join("leader")
    at_leader, at_agent = leader.subscribe(TOPIC_ENROL), agent.subscribe(TOPIC_ENROL)

    agent.publish(TOPIC_ENROL, b"sealed")

    assert at_leader.get(timeout=1) == Message(TOPIC_ENROL, b"sealed", "agent")
    assert at_agent.get(timeout=0.05) is None


def test_messages_go_only_to_subscribers_of_their_topic() -> None:
    bus = MemoryBus()
    agent, leader = bus.join("agent"), bus.join("leader")
    assignments = agent.subscribe(TOPIC_ASSIGNMENT)
    leader.publish(TOPIC_ENROL, b"not an assignment")
    assert assignments.get(timeout=0.05) is None


@pytest.mark.parametrize(
    ("topic", "data"),
    [("cooee/unknown/v1", b"x"), (TOPIC_ENROL, b"x" * (MAX_MESSAGE_BYTES + 1))],
)
def test_publish_refuses_unknown_topics_and_oversized_messages(topic: str, data: bytes) -> None:
    with pytest.raises(TransportError):
        MemoryBus().join("agent").publish(topic, data)


def test_a_message_of_exactly_64_kib_is_delivered() -> None:
    bus = MemoryBus()
    sub = bus.join("leader").subscribe(TOPIC_ENROL)
    bus.join("agent").publish(TOPIC_ENROL, b"x" * MAX_MESSAGE_BYTES)
    message = sub.get(timeout=1)
    assert message is not None and len(message.data) == MAX_MESSAGE_BYTES


def test_oversized_inbound_messages_are_dropped() -> None:
    leader = MemoryBus().join("leader")
    sub = leader.subscribe(TOPIC_ENROL)
    leader.inject(Message(TOPIC_ENROL, b"x" * (MAX_MESSAGE_BYTES + 1), "hostile"))
    assert sub.get(timeout=0.05) is None


def test_a_validator_that_refuses_or_raises_drops_the_message_and_nothing_else() -> None:
    seen: list[bytes] = []

    def validator(topic: str, data: bytes, from_peer: str) -> bool:
        seen.append(data)
        if data == b"boom":
            raise ValueError("validator bug")
        return data.startswith(b"{")

    bus = MemoryBus()
    leader = bus.join("leader", validator=validator)
    agent = bus.join("agent")
    sub = leader.subscribe(TOPIC_ENROL)
    for data in (b"garbage", b"boom", b"{}"):
        agent.publish(TOPIC_ENROL, data)

    assert sub.get(timeout=1) == Message(TOPIC_ENROL, b"{}", "agent")
    assert sub.get(timeout=0.05) is None
    assert seen == [b"garbage", b"boom", b"{}"]


def test_a_peer_over_its_rate_is_dropped_while_others_still_get_through() -> None:
    bus = MemoryBus()
    leader = bus.join("leader", peer_limit=RateLimit(rate=0.001, burst=5))
    flooder, honest = bus.join("flooder"), bus.join("honest")
    sub = leader.subscribe(TOPIC_ENROL)
    for n in range(100):
        flooder.publish(TOPIC_ENROL, b"%d" % n)
    honest.publish(TOPIC_ENROL, b"honest")

    received = []
    while (message := sub.get(timeout=0.05)) is not None:
        received.append(message)
    assert [m.data for m in received if m.from_peer == "flooder"] == [b"0", b"1", b"2", b"3", b"4"]
    assert [m.data for m in received if m.from_peer == "honest"] == [b"honest"]


def test_a_partitioned_peer_neither_sends_nor_receives_until_healed() -> None:
    bus = MemoryBus()
    agent, leader = bus.join("agent"), bus.join("leader")
    sub = leader.subscribe(TOPIC_ENROL)
    bus.partition("agent")
    agent.publish(TOPIC_ENROL, b"lost")
    assert agent.peers() == [] and leader.peers() == []
    bus.heal("agent")
    agent.publish(TOPIC_ENROL, b"arrives")
    assert sub.get(timeout=1) == Message(TOPIC_ENROL, b"arrives", "agent")
    assert sub.get(timeout=0.05) is None
    assert leader.peers() == ["agent"]


def test_closing_the_transport_ends_a_blocked_iteration() -> None:
    leader = MemoryBus().join("leader")
    sub = leader.subscribe(TOPIC_ENROL)
    collected: list[Message] = []
    reader = threading.Thread(target=lambda: collected.extend(sub))
    reader.start()
    leader.close()
    reader.join(5)
    assert not reader.is_alive() and collected == []
    with pytest.raises(TransportError):
        leader.publish(TOPIC_ENROL, b"after close")


def test_a_closed_subscription_receives_nothing_more() -> None:
    bus = MemoryBus()
    agent, leader = bus.join("agent"), bus.join("leader")
    sub = leader.subscribe(TOPIC_ENROL)
    sub.close()
    agent.publish(TOPIC_ENROL, b"late")
    assert sub.get(timeout=0.05) is None and sub.closed


def test_joining_twice_under_one_peer_id_is_refused() -> None:
    bus = MemoryBus()
    bus.join("agent")
    with pytest.raises(TransportError):
        bus.join("agent")
