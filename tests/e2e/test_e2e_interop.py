"""Cross-implementation: a js-libp2p or go-libp2p peer is the only relay between a real agent
and a real Leader; as a subscriber it receives the agent's enrolment, whose armored age body
opens with the Leader's identity file (the real ``age`` CLI for js, filippo.io/age in Go)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from typing import Any

import pytest
from e2eharness import World
from meshharness import PeerProcess, Spawner

from cooee_agent.agent.state import ASSIGNMENT_FILE
from cooee_agent.protocol.kinds import TOPIC_ASSIGNMENT, TOPIC_ENROL

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def need_age_cli() -> str:
    path = shutil.which("age")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("the age CLI is not installed (Debian package age)")
        pytest.skip("the age CLI is not installed")
    return path


def enrol_through(world: World, relay: PeerProcess) -> tuple[dict[str, Any], dict[str, Any]]:
    """Leader and agent both know only ``relay``; returns the agent's status and the enrolment
    event the relay printed (the agent's own envelope, as it crossed the relay)."""
    leader_addr = world.start_leader(bootstrap=[relay.addr])
    agent = world.agent("relayed", bootstrap=[relay.addr]).start()
    status = agent.enrolled()
    assert world.online([agent.hostname])[0]["host_id"] == status["host_id"]

    # The relay was the only way: the agent is connected to it and to nothing else.
    assert agent.status()["peers"] == 1
    leader_peer = leader_addr.rsplit("/", 1)[1]
    relay.wait_for(
        lambda e: (
            e["event"] == "message" and e["topic"] == TOPIC_ASSIGNMENT and e["from"] == leader_peer
        ),
        30,
        "the Leader's assignment crossing the relay",
    )
    enrolment = relay.wait_for(
        lambda e: (
            e["event"] == "message" and e["topic"] == TOPIC_ENROL and e["from"] == status["peer_id"]
        ),
        30,
        "the agent's enrolment crossing the relay",
    )
    return status, enrolment


def check_opened(world: World, status: dict[str, Any], plaintext: bytes) -> None:
    """The opened body is the agent's signed enrolment record, the one the Leader answered."""
    signed = json.loads(plaintext)
    assert set(signed) == {"record", "signer", "sig"}
    record = signed["record"]
    assert record["kind"] == "enrolment"
    assert record["host"]["hostname"] == status["hostname"]
    stored = json.loads((world.tmp / "relayed" / ASSIGNMENT_FILE).read_text())
    assert record["nonce"] == stored["assignment"]["enrolment_nonce"]


def test_a_js_libp2p_relay_carries_a_real_enrolment_and_age_opens_its_body(
    world: World, peers: Spawner
) -> None:
    age = need_age_cli()
    relay = peers.js("js-relay", "subscribe")
    status, enrolment = enrol_through(world, relay)

    envelope = json.loads(base64.b64decode(str(enrolment["data_b64"])))
    assert envelope["body"].startswith("-----BEGIN AGE ENCRYPTED FILE-----")
    opened = subprocess.run(
        [age, "-d", "-i", str(world.leader_identity)],
        input=envelope["body"].encode("ascii"),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert opened.returncode == 0, opened.stderr.decode(errors="replace")
    check_opened(world, status, opened.stdout)


def test_a_go_libp2p_relay_carries_a_real_enrolment_and_filippo_age_opens_its_body(
    world: World, peers: Spawner
) -> None:
    relay = peers.go("go-relay", "subscribe", age_identity=world.leader_identity)
    status, enrolment = enrol_through(world, relay)

    assert "open_error" not in enrolment, enrolment.get("open_error")
    check_opened(world, status, base64.b64decode(str(enrolment["plaintext_b64"])))
