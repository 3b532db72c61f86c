"""What the mesh drops is counted and told: inbound refusals by a real node on 127.0.0.1, the
send queue's bound in bytes, and the summaries that stand in for a line per message."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
import trio

from cooee_agent.bus.drops import MAX_NAMED_PEERS, DropTally
from cooee_agent.bus.libp2p_patches import bounded_rpc_queue
from cooee_agent.bus.limits import RateLimit
from cooee_agent.bus.mesh_config import MeshConfig
from cooee_agent.bus.mesh_transport import multiaddrs_of, start_mesh
from cooee_agent.protocol.kinds import TOPIC_ENROL

LOOPBACK = ("/ip4/127.0.0.1/tcp/0",)

pytestmark = pytest.mark.timeout(120)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _publish_rpc(size: int) -> object:
    from libp2p.pubsub.pb import rpc_pb2

    message = rpc_pb2.Message(data=b"x" * size, topicIDs=[TOPIC_ENROL])
    return rpc_pb2.RPC(publish=[message])


def test_the_send_queue_refuses_what_would_take_it_past_its_bytes_and_pop_frees_them() -> None:
    queue = bounded_rpc_queue(max_messages=100, max_bytes=200_000)()
    big = _publish_rpc(64 * 1024)
    size = big.ByteSize()  # type: ignore[attr-defined]
    assert [queue.push(big) for _ in range(4)] == [True, True, True, False]
    assert queue.queued_bytes == 3 * size and len(queue) == 3
    assert queue.push(_publish_rpc(10))  # a small one still fits

    async def pop_one() -> object:
        return await queue.pop()

    assert trio.run(pop_one) is big
    assert queue.queued_bytes == 2 * size + _publish_rpc(10).ByteSize()  # type: ignore[attr-defined]
    assert queue.push(big)


def test_one_rpc_larger_than_the_bound_still_goes_to_an_empty_queue() -> None:
    queue = bounded_rpc_queue(max_messages=100, max_bytes=1000)()
    assert queue.push(_publish_rpc(5000))
    assert not queue.push(_publish_rpc(1))


def test_the_send_queue_keeps_its_bound_in_messages() -> None:
    queue = bounded_rpc_queue(max_messages=2, max_bytes=10**9)()
    assert [queue.push(_publish_rpc(1)) for _ in range(3)] == [True, True, False]


def test_a_tally_warns_at_the_first_drop_then_once_an_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    tally = DropTally("inbound", interval=60.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="cooee_agent.bus.drops"):
        tally.count("originator over its rate", "peerA", 100)
        for _ in range(500):
            clock.now += 0.1
            tally.count("originator over its rate", "peerA", 100)
        lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == (
        "inbound: dropped 1 message (100 bytes) from peer peerA: originator over its rate"
    )
    # 50 s of drops in one line at the 60 s mark; the rest wait for the next interval.
    assert len(lines) == 1
    clock.now += 20
    with caplog.at_level(logging.WARNING, logger="cooee_agent.bus.drops"):
        tally.count("originator over its rate", "peerA", 100)
    assert caplog.records[-1].getMessage().startswith("inbound: dropped 501 messages (50100 bytes)")
    assert tally.totals() == {"originator over its rate": 502}


def test_a_sybil_flood_of_peer_ids_is_folded_into_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    tally = DropTally("inbound", clock=clock)
    tally.count("over the size limit", "first")  # reported at once
    for n in range(1000):
        tally.count("over the size limit", f"sybil-{n}")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cooee_agent.bus.drops"):
        tally.report()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == MAX_NAMED_PEERS + 1
    (folded,) = [line for line in lines if "peer other peers" in line]
    assert f"dropped {1000 - MAX_NAMED_PEERS} messages" in folded


def test_a_node_counts_and_reports_what_it_refuses_over_an_originators_rate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = start_mesh(
        MeshConfig(
            state_dir=tmp_path / "receiver",
            listen=LOOPBACK,
            originator_limit=RateLimit(rate=0.01, burst=3.0),
        )
    )
    sender = start_mesh(
        MeshConfig(
            state_dir=tmp_path / "sender", listen=LOOPBACK, bootstrap=tuple(multiaddrs_of(receiver))
        )
    )
    try:
        got = receiver.subscribe(TOPIC_ENROL)
        deadline = time.monotonic() + 30
        while receiver.peer_id not in sender.topic_peers(TOPIC_ENROL):
            assert time.monotonic() < deadline, "no topic peer"
            time.sleep(0.05)
        with caplog.at_level(logging.WARNING, logger="cooee_agent.bus.drops"):
            for n in range(10):
                sender.publish(TOPIC_ENROL, b"message %d" % n)
            while receiver.drop_counts().get("originator over its rate", 0) < 7:
                assert time.monotonic() < deadline, receiver.drop_counts()
                time.sleep(0.05)
        heard = []
        while (message := got.get(timeout=0.5)) is not None:
            heard.append(message.data)
        assert heard == [b"message 0", b"message 1", b"message 2"]
        warned = [r.getMessage() for r in caplog.records if r.name == "cooee_agent.bus.drops"]
        assert warned and f"from peer {sender.peer_id}: originator over its rate" in warned[0]
    finally:
        sender.close()
        receiver.close()
