"""The synchronous facade over the trio mesh node, two nodes in one process on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cooee_agent.agent.wiring import mesh_config
from cooee_agent.bus.mesh_config import MeshConfig
from cooee_agent.bus.mesh_transport import MeshTransport, multiaddrs_of, start_mesh
from cooee_agent.bus.transport import MAX_MESSAGE_BYTES, Message
from cooee_agent.errors import TransportError
from cooee_agent.protocol.kinds import TOPIC_ENROL

LOOPBACK = ("/ip4/127.0.0.1/tcp/0",)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[MeshTransport, MeshTransport]]:
    leader = start_mesh(MeshConfig(state_dir=tmp_path / "leader", listen=LOOPBACK))
    agent = start_mesh(
        MeshConfig(
            state_dir=tmp_path / "agent", listen=LOOPBACK, bootstrap=tuple(multiaddrs_of(leader))
        )
    )
    try:
        yield leader, agent
    finally:
        agent.close()
        leader.close()


def _until(condition, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_publish_and_subscribe_between_two_nodes_in_one_process(
    pair: tuple[MeshTransport, MeshTransport],
) -> None:
    leader, agent = pair
    enrolments = leader.subscribe(TOPIC_ENROL)
    _until(lambda: leader.peer_id in agent.topic_peers(TOPIC_ENROL))
    assert agent.peers() == [leader.peer_id] and leader.peers() == [agent.peer_id]

    # 150 back to back: more than py-libp2p's default queues (32) and spam limit (10/s) allow.
    for n in range(150):
        agent.publish(TOPIC_ENROL, b"%d" % n)
    received: list[Message] = []
    _until(
        lambda: (
            received.extend(iter(lambda: enrolments.get(timeout=0.1), None))
            or (len(received) >= 150)
        )
    )
    assert sorted(int(m.data) for m in received) == list(range(150))
    assert {m.from_peer for m in received} == {agent.peer_id}


def test_publish_refuses_oversized_messages_before_they_leave(
    pair: tuple[MeshTransport, MeshTransport],
) -> None:
    _, agent = pair
    with pytest.raises(TransportError, match="65536-byte limit"):
        agent.publish(TOPIC_ENROL, b"x" * (MAX_MESSAGE_BYTES + 1))


def test_closing_ends_subscriptions_and_later_calls_fail_cleanly(tmp_path: Path) -> None:
    node = start_mesh(MeshConfig(state_dir=tmp_path, listen=LOOPBACK))
    sub = node.subscribe(TOPIC_ENROL)
    reader = threading.Thread(target=lambda: list(sub))
    reader.start()
    node.close()
    reader.join(5)
    assert not reader.is_alive()
    with pytest.raises(TransportError, match="closed"):
        node.publish(TOPIC_ENROL, b"late")
    node.close()  # twice is harmless


def test_a_node_that_ends_underneath_its_transport_reports_itself_dead(tmp_path: Path) -> None:
    import trio

    node = start_mesh(MeshConfig(state_dir=tmp_path, listen=LOOPBACK))
    try:
        assert node.alive
        # The trio side stops without close(): what a crash of the node's thread looks like.
        trio.from_thread.run_sync(node._node.stop, trio_token=node._token)
        node._thread.join(10)
        assert not node.alive
        with pytest.raises(TransportError, match="stopped"):
            node.publish(TOPIC_ENROL, b"into the void")
    finally:
        node.close()
    assert not node.alive


def test_a_bad_multiaddr_in_config_is_a_transport_error(tmp_path: Path) -> None:
    with pytest.raises(TransportError, match="multiaddr"):
        start_mesh(MeshConfig(state_dir=tmp_path, listen=LOOPBACK, bootstrap=("not-an-addr",)))


def test_a_port_in_use_is_a_transport_error(tmp_path: Path) -> None:
    first = start_mesh(MeshConfig(state_dir=tmp_path / "a", listen=LOOPBACK))
    try:
        port = multiaddrs_of(first)[0].split("/")[4]
        with pytest.raises(TransportError):
            start_mesh(
                MeshConfig(state_dir=tmp_path / "b", listen=(f"/ip4/127.0.0.1/tcp/{port}",)),
                ready_timeout=20,
            )
    finally:
        first.close()


def test_mdns_and_upnp_stay_off_unless_configured(
    pair: tuple[MeshTransport, MeshTransport],
) -> None:
    for transport in pair:
        host = transport._node._host
        assert host.mDNS is None and host.upnp is None


def test_mesh_settings_come_from_the_agent_configuration(tmp_path: Path) -> None:
    from cooee_agent.config import Config
    from cooee_agent.config import MeshConfig as MeshSection

    addr = "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB"
    config = Config(state_dir=tmp_path, mesh=MeshSection(listen=LOOPBACK[0], bootstrap=(addr,)))
    mesh = mesh_config(config)
    assert (mesh.state_dir, mesh.listen, mesh.bootstrap, mesh.mdns) == (
        tmp_path,
        LOOPBACK,
        (addr,),
        False,
    )
