"""Cross-implementation: js-libp2p and go-libp2p peers relay and receive what py-libp2p sends."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pyrage
import pytest
from meshharness import PeerProcess, Spawner, publish_until_received

from cooee_agent.protocol.kinds import TOPIC_ASSIGNMENT, TOPIC_ENROL

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def _only_relay(spawn: Spawner, relay: PeerProcess) -> None:
    """Two py nodes that know only ``relay``: every message between them crosses it."""
    agent = spawn.py("agent", bootstrap=(relay.addr,), subscribe=(TOPIC_ASSIGNMENT,))
    leader = spawn.py("leader", bootstrap=(relay.addr,), subscribe=(TOPIC_ENROL,))
    agent.wait_topic_peers(TOPIC_ENROL, [relay.peer_id])
    leader.wait_topic_peers(TOPIC_ASSIGNMENT, [relay.peer_id])

    publish_until_received(agent, [leader], TOPIC_ENROL, b'{"kind":"enrol"}')
    publish_until_received(leader, [agent], TOPIC_ASSIGNMENT, b'{"kind":"assignment"}')
    for node in (agent, leader):
        reply = node.peers()
        assert reply["peers"] == [relay.peer_id]
        assert reply["protocols"] == {relay.peer_id: "/meshsub/1.2.0"}
    enrol = next(m for m in leader.messages(TOPIC_ENROL))
    assert enrol["from"] == agent.peer_id  # signed by the agent, carried unchanged


def _receives_py_message(spawn: Spawner, make_subscriber) -> PeerProcess:  # type: ignore[no-untyped-def]
    agent = spawn.py("agent")
    subscriber = make_subscriber(agent.addr)
    agent.wait_topic_peers(TOPIC_ENROL, [subscriber.peer_id])
    data = b'{"v":1,"kind":"enrol","body":"opaque"}'
    publish_until_received(agent, [subscriber], TOPIC_ENROL, data)
    message = next(m for m in subscriber.messages(TOPIC_ENROL))
    assert message["from"] == agent.peer_id
    assert base64.b64decode(str(message["data_b64"])) == data
    return agent


def test_a_js_libp2p_peer_as_the_only_relay_carries_enrolment_and_assignment(
    spawn: Spawner,
) -> None:
    _only_relay(spawn, spawn.js("js-relay", "relay"))


def test_a_js_libp2p_subscriber_receives_a_py_nodes_message(spawn: Spawner) -> None:
    _receives_py_message(spawn, lambda addr: spawn.js("js-sub", "subscribe", bootstrap=(addr,)))


def test_a_go_libp2p_peer_as_the_only_relay_carries_enrolment_and_assignment(
    spawn: Spawner,
) -> None:
    _only_relay(spawn, spawn.go("go-relay", "relay"))


def test_a_go_libp2p_subscriber_opens_the_armored_age_body_with_filippo_age(
    spawn: Spawner, tmp_path: Path
) -> None:
    identity = pyrage.x25519.Identity.generate()
    identity_file = tmp_path / "leader.age"
    identity_file.write_text(  # the layout age-keygen writes, comments included
        f"# created: 2025-01-01T00:00:00Z\n# public key: {identity.to_public()}\n{identity}\n"
    )
    secret = "enrolment record \u2014 for the Leader's eyes only".encode()
    body = pyrage.encrypt(secret, [identity.to_public()], armored=True).decode("ascii")
    assert body.startswith("-----BEGIN AGE ENCRYPTED FILE-----")
    envelope = json.dumps(
        {
            "v": 1,
            "kind": "enrol",
            "address": "ucxl://any:admin@COOEE:enrol/#/agentid/TEST",
            "sent_at": "2025-01-01T00:00:00Z",
            "body": body,
        }
    ).encode()

    agent = spawn.py("agent")
    leader = spawn.go("go-leader", "subscribe", bootstrap=(agent.addr,), age_identity=identity_file)
    agent.wait_topic_peers(TOPIC_ENROL, [leader.peer_id])
    publish_until_received(agent, [leader], TOPIC_ENROL, envelope)

    message = next(m for m in leader.messages(TOPIC_ENROL))
    assert "open_error" not in message, message.get("open_error")
    assert base64.b64decode(str(message["plaintext_b64"])) == secret


def test_go_libp2p_reads_the_peer_key_file_and_gets_the_same_peer_id(
    spawn: Spawner, tmp_path: Path
) -> None:
    from libp2p.peer.id import ID

    from cooee_agent.bus.peerkey import PEER_KEY_FILE, load_or_create_peer_key

    key_pair = load_or_create_peer_key(tmp_path / "state")
    go = spawn.go("go-same-key", "relay", peer_key=tmp_path / "state" / PEER_KEY_FILE)
    assert go.peer_id == ID.from_pubkey(key_pair.public_key).to_base58()
