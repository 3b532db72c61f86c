"""Kademlia on the mesh host, nodes in this process on 127.0.0.1: records put by the Leader are
got by every node, and a hostile peer's forged or replayed records are refused by honest ones."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from host_record_support import host_info, sealed
from pyrage import x25519

from cooee_agent.bus.dht import DhtSettings
from cooee_agent.bus.mesh_config import MeshConfig
from cooee_agent.bus.mesh_transport import MeshTransport, multiaddrs_of, start_mesh
from cooee_agent.errors import TransportError
from cooee_agent.protocol.host_records import (
    HostRecordRules,
    host_key,
    open_host_record,
    parse_host_record,
)
from cooee_agent.protocol.keys import raw_public

LEADER = Ed25519PrivateKey.generate()
READ = x25519.Identity.generate()
KEY = host_key(3)


def value(
    seq: int,
    signer: Ed25519PrivateKey = LEADER,
    hostname: str = "gpu-03",
    expires_in: timedelta = timedelta(hours=1),
    read_key: str = str(READ.to_public()),
) -> bytes:
    return sealed(host_info(3, seq=seq, hostname=hostname), signer, read_key, expires_in=expires_in)


class _Anything:
    """A hostile node's rules: it stores and sends whatever it likes."""

    def check(self, key: str, data: bytes) -> object:
        return None

    def select(self, key: str, values: list[bytes]) -> int:
        return 0  # the newest put wins its own store


@pytest.fixture
def dht_nodes(tmp_path: Path) -> Iterator[Callable[..., MeshTransport]]:
    started: list[MeshTransport] = []

    def start(
        name: str, bootstrap: tuple[str, ...] = (), rules: Any = None, refresh: float = 0.5
    ) -> MeshTransport:
        config = MeshConfig(
            state_dir=tmp_path / name,
            listen=("/ip4/127.0.0.1/tcp/0",),
            bootstrap=bootstrap,
            redial_base=0.2,
            redial_cap=1.0,
            dht=DhtSettings(refresh_interval=refresh),
        )
        honest = HostRecordRules(trusted={raw_public(LEADER)}, read_key=str(READ.to_public()))
        node = start_mesh(config, dht_rules=rules or honest)
        started.append(node)
        return node

    try:
        yield start
    finally:
        for node in reversed(started):
            node.close()


def _seq_of(data: bytes | None) -> int | None:
    return None if data is None else parse_host_record(data).seq


def test_a_node_without_a_dht_refuses_dht_calls(tmp_path: Path) -> None:
    config = MeshConfig(state_dir=tmp_path / "plain", listen=("/ip4/127.0.0.1/tcp/0",))
    with start_mesh(config) as node, pytest.raises(TransportError, match="runs no DHT"):
        node.dht_get(KEY)


def test_settings_without_rules_are_refused(tmp_path: Path) -> None:
    config = MeshConfig(
        state_dir=tmp_path / "x", listen=("/ip4/127.0.0.1/tcp/0",), dht=DhtSettings()
    )
    with pytest.raises(TransportError, match="needs both"):
        start_mesh(config)


def test_every_node_gets_the_leaders_record_and_refuses_a_hostile_peers(
    dht_nodes: Callable[..., MeshTransport],
) -> None:
    leader = dht_nodes("leader")
    boot = tuple(multiaddrs_of(leader))
    honest = [dht_nodes(f"agent-{n}", boot) for n in range(3)]
    hostile = dht_nodes("hostile", boot, rules=_Anything())
    _until_tables_hold([*honest, hostile], 4)

    leader.dht_put(KEY, value(seq=10))
    for node in honest:
        got = node.dht_get(KEY)
        assert got is not None
        assert open_host_record(parse_host_record(got), [READ]).hostname == "gpu-03"

    # A record signed by another key, with a higher sequence number: stored by no honest node.
    hostile.dht_put(KEY, value(seq=99, signer=Ed25519PrivateKey.generate(), hostname="evil"))
    # The Leader's own older record replayed: loses to the newer one everywhere.
    hostile.dht_put(KEY, value(seq=9))
    for node in [leader, *honest]:
        assert _seq_of(node.dht_get(KEY)) == 10


def test_the_record_outlives_the_leader(dht_nodes: Callable[..., MeshTransport]) -> None:
    leader = dht_nodes("leader")
    boot = tuple(multiaddrs_of(leader))
    agents = [dht_nodes(f"agent-{n}", boot) for n in range(3)]
    _until_tables_hold(agents, 3)
    leader.dht_put(KEY, value(seq=1))
    leader.close()
    for node in agents:
        assert _seq_of(node.dht_get(KEY)) == 1


def _until_tables_hold(nodes: list[MeshTransport], peers: int) -> None:
    import time

    deadline = time.monotonic() + 60
    while any(len(n.dht_peers()) < peers for n in nodes):
        assert time.monotonic() < deadline, [len(n.dht_peers()) for n in nodes]
        time.sleep(0.1)


def test_a_client_that_asked_is_kept_out_of_the_routing_tables(
    dht_nodes: Callable[..., MeshTransport], tmp_path: Path
) -> None:
    # libp2p_patches.route_to_servers_only: 0.8.1 adds every peer that opens a DHT stream, and
    # keeps it until its own next query to it fails (no refresh here before the check).
    leader = dht_nodes("leader", refresh=3600)
    leader.dht_put(KEY, value(seq=1))
    config = MeshConfig(
        state_dir=tmp_path / "client",
        listen=("/ip4/127.0.0.1/tcp/0",),
        bootstrap=tuple(multiaddrs_of(leader)),
        topics=(),
        dht=DhtSettings(server=False),
    )
    honest = HostRecordRules(trusted={raw_public(LEADER)}, read_key=str(READ.to_public()))
    with start_mesh(config, dht_rules=honest) as client:
        _until_connected(client)
        assert _seq_of(client.dht_get(KEY)) == 1
        assert client.peer_id not in leader.dht_peers()


def _until_connected(node: MeshTransport) -> None:
    import time

    deadline = time.monotonic() + 30
    while not node.peers():
        assert time.monotonic() < deadline, "no connection"
        time.sleep(0.05)


def _answer_late(node: MeshTransport, seconds: float) -> None:
    """From now on ``node`` answers every DHT question ``seconds`` late, as a peer does whose
    process waits for its turn on a busy CPU."""
    import trio
    from libp2p.kad_dht.common import PROTOCOL_ID

    kad = node._node._need_dht().dht

    async def late(stream: Any) -> None:
        await trio.sleep(seconds)
        await kad.handle_stream(stream)

    trio.from_thread.run_sync(
        kad.host.set_stream_handler, PROTOCOL_ID, late, trio_token=node._token
    )


def _plant(node: MeshTransport, data: bytes) -> None:
    """Put ``data`` straight into the node's store, past its rules (what a PUT cannot do)."""
    import trio

    store = node._node._need_dht().dht.value_store
    trio.from_thread.run_sync(store.put, KEY.encode(), data, trio_token=node._token)


def _held(node: MeshTransport) -> bytes | None:
    import trio

    store = node._node._need_dht().dht.value_store
    record = trio.from_thread.run_sync(store.get, KEY.encode(), trio_token=node._token)
    return None if record is None else bytes(record.value)


def _client(tmp_path: Path, peers: list[MeshTransport], grace: float | None = None) -> Any:
    settings = DhtSettings(server=False)
    if grace is not None:
        settings = DhtSettings(server=False, answer_grace=grace)
    config = MeshConfig(
        state_dir=tmp_path / "client",
        listen=("/ip4/127.0.0.1/tcp/0",),
        bootstrap=tuple(multiaddrs_of(peer)[0] for peer in peers),
        topics=(),
        dht=settings,
    )
    honest = HostRecordRules(trusted={raw_public(LEADER)}, read_key=str(READ.to_public()))
    client = start_mesh(config, dht_rules=honest)
    import time

    deadline = time.monotonic() + 30
    while len(client.peers()) < len(peers):
        assert time.monotonic() < deadline, "the client did not reach every peer"
        time.sleep(0.05)
    return client


def _two_holders(
    dht_nodes: Callable[..., MeshTransport],
) -> tuple[MeshTransport, MeshTransport]:
    """Two nodes, "prompt" and "busy", that know each other and hold the Leader's record seq 1."""
    leader = dht_nodes("leader")
    boot = tuple(multiaddrs_of(leader))
    prompt, busy = dht_nodes("prompt", boot), dht_nodes("busy", boot)
    _until_tables_hold([prompt, busy], 2)
    leader.dht_put(KEY, value(seq=1))
    return prompt, busy


def test_a_peer_that_answers_late_does_not_delay_a_lookup_another_peer_answered(
    dht_nodes: Callable[..., MeshTransport], tmp_path: Path
) -> None:
    import time

    prompt, busy = _two_holders(dht_nodes)
    assert _seq_of(_held(prompt)) == _seq_of(_held(busy)) == 1
    _answer_late(busy, 3.0)
    with _client(tmp_path, [prompt, busy]) as client:
        started = time.monotonic()
        assert _seq_of(client.dht_get(KEY)) == 1
        # Waiting for every peer asked took the busy one's 3 s.
        assert time.monotonic() - started < 1.5


def test_a_newer_value_arriving_within_the_grace_wins_over_the_first_answer(
    dht_nodes: Callable[..., MeshTransport], tmp_path: Path
) -> None:
    prompt, busy = _two_holders(dht_nodes)
    _plant(busy, value(seq=2))  # a PUT that reached the busy peer only
    _answer_late(busy, 0.3)
    with _client(tmp_path, [prompt, busy], grace=5.0) as client:
        assert _seq_of(client.dht_get(KEY)) == 2


def test_a_node_answers_from_its_own_copy_without_waiting_for_busy_peers(
    dht_nodes: Callable[..., MeshTransport],
) -> None:
    import time

    leader = dht_nodes("leader")
    boot = tuple(multiaddrs_of(leader))
    agents = [dht_nodes(f"agent-{n}", boot) for n in range(3)]
    _until_tables_hold(agents, 3)
    leader.dht_put(KEY, value(seq=10))
    leader.dht_put(KEY, value(seq=11))  # every holder keeps the newer of the two
    for busy in [leader, *agents[1:]]:
        _answer_late(busy, 3.0)
    started = time.monotonic()
    assert _seq_of(agents[0].dht_get(KEY)) == 11
    # Asking the closest peers first took the busy ones' 3 s.
    assert time.monotonic() - started < 1.5


def test_a_local_copy_the_rules_refuse_is_dropped_and_the_network_asked(
    dht_nodes: Callable[..., MeshTransport],
) -> None:
    leader = dht_nodes("leader")
    boot = tuple(multiaddrs_of(leader))
    agents = [dht_nodes(f"agent-{n}", boot) for n in range(2)]
    _until_tables_hold(agents, 2)
    leader.dht_put(KEY, value(seq=10))
    refused = {
        "expired": value(seq=99, expires_in=timedelta(seconds=-1)),
        "another signer": value(seq=99, signer=Ed25519PrivateKey.generate()),
        "an old read key": value(seq=99, read_key=str(x25519.Identity.generate().to_public())),
    }
    for why, planted in refused.items():
        _plant(agents[0], planted)
        assert _seq_of(agents[0].dht_get(KEY)) == 10, why
        assert _held(agents[0]) is None, why


def test_a_client_without_topics_sets_up_no_gossipsub_with_its_peer(
    dht_nodes: Callable[..., MeshTransport], tmp_path: Path
) -> None:
    import time

    leader = dht_nodes("leader", refresh=3600)
    leader.dht_put(KEY, value(seq=1))
    with _client(tmp_path, [leader]) as client:
        assert _seq_of(client.dht_get(KEY)) == 1
        time.sleep(0.5)  # a gossipsub hello is done within milliseconds
        assert client.peer_id not in leader.peer_protocols()
        assert client.peer_protocols() == {}
        assert client.repair("cooee/enrol/v1") == "no topics: nothing to mend"


def test_a_client_dials_no_peer_beyond_the_ones_its_lookup_asks(
    dht_nodes: Callable[..., MeshTransport], tmp_path: Path
) -> None:
    import time

    leader = dht_nodes("leader")
    agents = [dht_nodes(f"agent-{n}", tuple(multiaddrs_of(leader))) for n in range(3)]
    _until_tables_hold([leader], 3)
    leader.dht_put(KEY, value(seq=1))
    with _client(tmp_path, [leader]) as client:
        assert _seq_of(client.dht_get(KEY)) == 1  # the leader holds it: nobody else is asked
        time.sleep(1.0)  # 0.8.1's start-up self-lookup dials the peers named within this
        assert client.peers() == [leader.peer_id], [a.peer_id for a in agents]
