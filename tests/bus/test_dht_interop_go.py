"""DHT interop: a go-libp2p node with go-libp2p-kad-dht v0.42.2 and a Go validator for /cooee/
joins the DHT of Python nodes, GETs a host record the Python Leader put, checks the Leader's
signature and opens it with filippo.io/age (tests/interop/go-dht)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from host_record_support import host_info, sealed
from meshharness import REPO, need_interop
from pyrage import x25519

from cooee_agent.bus.dht import DhtSettings
from cooee_agent.bus.mesh_config import MeshConfig
from cooee_agent.bus.mesh_transport import MeshTransport, multiaddrs_of, start_mesh
from cooee_agent.identity import token as codec
from cooee_agent.identity.canonical import make_tuple
from cooee_agent.protocol import b64
from cooee_agent.protocol.host_records import (
    HostRecordRules,
    SlotTuples,
    host_key,
)
from cooee_agent.protocol.keys import raw_public
from cooee_agent.protocol.records import TupleFields
from cooee_agent.protocol.schema import canonical

GO_DHT_PEER = REPO / "tests" / "interop" / "go-dht" / "dhtpeer"
LEADER = Ed25519PrivateKey.generate()
READ = x25519.Identity.generate()


@pytest.fixture
def python_dht(tmp_path: Path) -> Iterator[list[MeshTransport]]:
    rules = HostRecordRules(trusted={raw_public(LEADER)}, read_key=str(READ.to_public()))
    settings = DhtSettings(refresh_interval=1.0)
    started: list[MeshTransport] = []
    try:
        for name in ("leader", "agent-0", "agent-1"):
            boot = tuple(multiaddrs_of(started[0])) if started else ()
            config = MeshConfig(
                state_dir=tmp_path / name,
                listen=("/ip4/127.0.0.1/tcp/0",),
                bootstrap=boot,
                dht=settings,
            )
            started.append(start_mesh(config, dht_rules=rules))
        yield started
    finally:
        for node in reversed(started):
            node.close()


def test_a_go_node_gets_checks_and_opens_a_record_the_python_leader_put(
    python_dht: list[MeshTransport],
) -> None:
    need_interop(GO_DHT_PEER, "the go-libp2p-kad-dht peer")
    leader, *agents = python_dht
    deadline = time.monotonic() + 30
    while any(len(a.dht_peers()) < 2 for a in agents):
        assert time.monotonic() < deadline, "the Python tables did not fill"
        time.sleep(0.1)
    agent = make_tuple("llama3:8b", "gpu-09.lab", "02:00:00:00:00:09", "0")
    info = host_info(
        9,
        hostname="gpu-09.lab",
        mac="020000000009",
        agent_key=b64.encode(raw_public(Ed25519PrivateKey.generate())),
        slots=(
            SlotTuples(
                slot=0, gpu_id="0", token=codec.encode(1, 9, 0), tuples=(TupleFields.of(agent),)
            ),
        ),
    )
    leader.dht_put(host_key(9), sealed(info, LEADER, str(READ.to_public())))

    result = subprocess.run(
        [
            str(GO_DHT_PEER),
            "-bootstrap",
            multiaddrs_of(agents[0])[0],
            "-key",
            host_key(9),
            "-leader-key",
            b64.encode(raw_public(LEADER)),
            "-read-key",
            str(READ),
            "-timeout",
            "60s",
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines and lines[-1]["event"] == "opened", (result.stdout, result.stderr[-2000:])
    assert lines[-1]["plaintext"].encode("utf-8") == canonical(info)
    assert lines[-1]["seq"] == 1


def test_the_go_validator_refuses_a_record_signed_by_another_key(
    python_dht: list[MeshTransport],
) -> None:
    need_interop(GO_DHT_PEER, "the go-libp2p-kad-dht peer")
    leader, *agents = python_dht
    info = host_info(10, hostname="gpu-10.lab", mac="020000000010")
    leader.dht_put(host_key(10), sealed(info, LEADER, str(READ.to_public())))
    result = subprocess.run(
        [
            str(GO_DHT_PEER),
            "-bootstrap",
            multiaddrs_of(agents[0])[0],
            "-key",
            host_key(10),
            "-leader-key",
            b64.encode(raw_public(Ed25519PrivateKey.generate())),  # trusts another Leader
            "-read-key",
            str(READ),
            "-timeout",
            "5s",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert json.loads(result.stdout.splitlines()[-1])["event"] == "error"
