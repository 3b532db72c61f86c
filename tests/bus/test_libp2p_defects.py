"""py-libp2p 0.8.1 defects the mesh patches: a frame that is not an RPC ends the node that reads
it, concurrent RPC writes to one stream interleave, and a dial waits out a head start after it
has connected. Real nodes, 127.0.0.1."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from node_support import on_node, received, until

from cooee_agent.bus.mesh_transport import MeshTransport, multiaddrs_of
from cooee_agent.protocol.kinds import TOPIC_ENROL

# 0xff starts a field with wire type 7, which protobuf does not have: ParseFromString fails.
GARBAGE = b"\xff" * 64

pytestmark = pytest.mark.timeout(120)


def test_a_frame_that_is_not_an_rpc_drops_that_peer_and_the_node_serves_on(
    nodes: Callable[..., MeshTransport], caplog: pytest.LogCaptureFixture
) -> None:
    target = nodes("target")
    honest = nodes("honest", tuple(multiaddrs_of(target)))
    hostile = nodes("hostile", tuple(multiaddrs_of(target)))
    inbox = target.subscribe(TOPIC_ENROL)
    until(lambda: target.peer_id in hostile.peers(), "the hostile peer connected")

    async def send_garbage(pubsub: Any) -> None:
        from libp2p.custom_types import TProtocol
        from libp2p.peer.id import ID
        from libp2p.utils.varint import encode_varint_prefixed

        stream = await pubsub.host.new_stream(
            ID.from_base58(target.peer_id), [TProtocol("/meshsub/1.1.0")]
        )
        await stream.write(encode_varint_prefixed(GARBAGE))

    with caplog.at_level(logging.WARNING, logger="cooee_agent.bus.libp2p_patches"):
        on_node(hostile, send_garbage)
        until(
            lambda: any(
                "unreadable RPC" in r.getMessage() and hostile.peer_id in r.getMessage()
                for r in caplog.records
            ),
            "a warning naming the hostile peer",
        )
    assert target.alive, "the garbage frame ended the target's mesh node"
    # The target still reads and relays: an honest peer's messages arrive.
    until(lambda: target.peer_id in honest.topic_peers(TOPIC_ENROL), "the honest peer's mesh")
    honest.publish(TOPIC_ENROL, b"still here")
    assert [m.data for m in received(inbox, 1)] == [b"still here"]
    assert target.alive and hostile.alive


# Each RPC batches several messages (as go-libp2p does) and so spans several 64 KiB yamux
# frames; yamux gives up its lock between frames, where another writer can slip in.
WRITERS = 10
PER_RPC = 8
PAYLOAD = 60 * 1024


def test_concurrent_rpc_writes_to_one_stream_arrive_whole(
    nodes: Callable[..., MeshTransport], caplog: pytest.LogCaptureFixture
) -> None:
    receiver = nodes("receiver")
    sender = nodes("sender", tuple(multiaddrs_of(receiver)))
    inbox = receiver.subscribe(TOPIC_ENROL)
    until(lambda: receiver.peer_id in sender.topic_peers(TOPIC_ENROL), "the receiver's mesh")

    async def write_concurrently(pubsub: Any) -> None:
        import trio
        from libp2p.peer.id import ID
        from libp2p.pubsub.pb import rpc_pb2
        from libp2p.pubsub.pubsub import PUBSUB_SIGNING_PREFIX

        stream = pubsub.peers[ID.from_base58(receiver.peer_id)]

        def signed(n: int) -> Any:
            msg = rpc_pb2.Message(
                data=b"%04d" % n + b"x" * PAYLOAD,
                topicIDs=[TOPIC_ENROL],
                from_id=pubsub.my_id.to_bytes(),
                seqno=pubsub._next_seqno(),
            )
            msg.signature = pubsub.sign_key.sign(
                PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString()
            )
            msg.key = pubsub.host.get_public_key().serialize()
            return msg

        def rpc(w: int) -> Any:
            return rpc_pb2.RPC(publish=[signed(w * PER_RPC + i) for i in range(PER_RPC)])

        # What 0.8.1 does under load: the peer's queue sender and gossipsub's direct writes.
        async with trio.open_nursery() as nursery:
            for w in range(WRITERS):
                nursery.start_soon(pubsub.write_msg, stream, rpc(w))

    with caplog.at_level(logging.WARNING, logger="cooee_agent.bus.libp2p_patches"):
        on_node(sender, write_concurrently)
        got = received(inbox, WRITERS * PER_RPC)
    assert not [r.getMessage() for r in caplog.records if "unreadable RPC" in r.getMessage()]
    assert sorted(int(m.data[:4]) for m in got) == list(range(WRITERS * PER_RPC))
    assert all(len(m.data) == 4 + PAYLOAD for m in got)
    assert receiver.alive and sender.alive


def test_the_patches_are_applied_once_however_many_nodes_start(
    nodes: Callable[..., MeshTransport],
) -> None:
    from libp2p.pubsub.pubsub import Pubsub

    nodes("first")
    read, write = Pubsub.continuously_read_stream, Pubsub.write_msg
    nodes("second")
    assert (Pubsub.continuously_read_stream, Pubsub.write_msg) == (read, write)
    assert getattr(read, "_cooee_patched", False) and getattr(write, "_cooee_patched", False)


def test_a_dial_returns_once_connected_not_after_the_happy_eyeballs_head_start(
    nodes: Callable[..., MeshTransport],
) -> None:
    import time

    import trio

    dialer = nodes("dialer", topics=())
    targets = [nodes(f"target{n}", topics=()) for n in range(3)]

    async def dial(addr: str) -> float:
        import multiaddr
        from libp2p.peer.peerinfo import info_from_p2p_addr

        started = time.perf_counter()
        await dialer._node._host.connect(info_from_p2p_addr(multiaddr.Multiaddr(addr)))
        return time.perf_counter() - started

    took = [
        trio.from_thread.run(dial, multiaddrs_of(t)[0], trio_token=dialer._token) for t in targets
    ]
    # Unpatched, every dial takes at least the 250 ms head start; a loopback dial takes a few ms
    # (the fastest of three, so that one slow turn on a busy CPU does not fail the test).
    assert min(took) < 0.2, took


def test_a_stream_is_opened_with_the_header_and_the_protocol_sent_together(
    nodes: Callable[..., MeshTransport], monkeypatch: pytest.MonkeyPatch
) -> None:
    import trio
    from libp2p.protocol_muxer.multiselect_communicator import MultiselectCommunicator

    dialer = nodes("dialer", topics=())
    listener = nodes("listener", topics=())
    steps: dict[int, list[str]] = {}
    write, read = MultiselectCommunicator.write, MultiselectCommunicator.read

    async def logged_write(self: Any, message: str) -> None:
        steps.setdefault(id(self.read_writer), []).append(f"write {message}")
        await write(self, message)

    async def logged_read(self: Any) -> str:
        answer: str = await read(self)
        steps.setdefault(id(self.read_writer), []).append(f"read {answer}")
        return answer

    monkeypatch.setattr(MultiselectCommunicator, "write", logged_write)
    monkeypatch.setattr(MultiselectCommunicator, "read", logged_read)

    address = multiaddrs_of(listener)[0]

    async def open_stream() -> int:
        import multiaddr
        from libp2p.custom_types import TProtocol
        from libp2p.peer.peerinfo import info_from_p2p_addr

        host = dialer._node._host
        info = info_from_p2p_addr(multiaddr.Multiaddr(address))
        await host.connect(info)
        stream = await host.new_stream(info.peer_id, [TProtocol("/ipfs/ping/1.0.0")])
        await stream.reset()
        return id(stream)

    stream = trio.from_thread.run(open_stream, trio_token=dialer._token)
    # 0.8.1 waited for the listener's header before proposing: write, read, write, read.
    assert steps[stream] == [
        "write /multistream/1.0.0",
        "write /ipfs/ping/1.0.0",
        "read /multistream/1.0.0",
        "read /ipfs/ping/1.0.0",
    ]
