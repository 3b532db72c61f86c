"""The enrolment vectors published in docs/PROTOCOL.md (sections 5-7) hold for this code."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyrage
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pyrage import x25519

from cooee_agent.leader.registrar import Registrar
from cooee_agent.protocol import b64
from cooee_agent.protocol.envelope import make_envelope, open_signed_record, sign_record
from cooee_agent.protocol.keys import AgentKeys, LeaderKeys
from cooee_agent.protocol.records import EnrolmentRecord
from cooee_agent.protocol.schema import canonical
from cooee_agent.protocol.sealing import address_for

Vectors = Callable[[str], list[str]]


@pytest.fixture
def vector_keys(protocol_vectors: Vectors) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in protocol_vectors("enrolment-keys"))


@pytest.fixture
def agent(vector_keys: dict[str, str]) -> AgentKeys:
    return AgentKeys(
        signing=Ed25519PrivateKey.from_private_bytes(
            bytes.fromhex(vector_keys["agent-ed25519-seed"])
        ),
        identity=x25519.Identity.from_str(vector_keys["agent-age-identity"]),
    )


@pytest.fixture
def leader(vector_keys: dict[str, str]) -> LeaderKeys:
    return LeaderKeys(
        signing=Ed25519PrivateKey.from_private_bytes(
            bytes.fromhex(vector_keys["leader-ed25519-seed"])
        ),
        identities=(x25519.Identity.from_str(vector_keys["leader-age-identity"]),),
    )


def test_key_vectors(vector_keys: dict[str, str], agent: AgentKeys, leader: LeaderKeys) -> None:
    assert b64.encode(agent.verify_key) == vector_keys["agent-verify-key"]
    assert agent.recipient == vector_keys["agent-age-recipient"]
    assert agent.agent_id == vector_keys["agent-id"]
    assert leader.bundle.text == vector_keys["leader-bundle"]
    assert leader.bundle.fingerprint == vector_keys["leader-fingerprint"]


def test_record_vector_is_canonical_and_valid(protocol_vectors: Vectors, agent: AgentKeys) -> None:
    (text,) = protocol_vectors("enrolment-record")
    record = EnrolmentRecord.from_dict(json.loads(text))
    assert canonical(record.to_dict()).decode() == text
    assert record.agent_ed25519 == b64.encode(agent.verify_key)


def test_signed_record_vector(protocol_vectors: Vectors, agent: AgentKeys) -> None:
    (record_text,) = protocol_vectors("enrolment-record")
    (signed_text,) = protocol_vectors("enrolment-signed-record")
    assert canonical(sign_record(json.loads(record_text), agent.signing)).decode() == signed_text
    record, signer = open_signed_record(signed_text.encode())
    assert (record, signer) == (json.loads(record_text), agent.verify_key)


def test_body_and_envelope_vectors(
    protocol_vectors: Vectors, agent: AgentKeys, leader: LeaderKeys
) -> None:
    body = "\n".join(protocol_vectors("enrolment-body")) + "\n"
    (signed_text,) = protocol_vectors("enrolment-signed-record")
    assert pyrage.decrypt(body.encode(), list(leader.identities)) == signed_text.encode()
    (envelope_text,) = protocol_vectors("enrolment-envelope")
    sent_at = datetime(2026, 1, 31, 12, 0, 5, tzinfo=UTC)
    address = address_for("enrolment", agent.agent_id)
    envelope = make_envelope("enrolment", address, body, agent.signing, sent_at=sent_at)
    assert envelope.to_bytes().decode() == envelope_text


def test_ingest_vectors(protocol_vectors: Vectors, leader: LeaderKeys, tmp_path: Path) -> None:
    (envelope_text,) = protocol_vectors("enrolment-envelope")
    for number, line in enumerate(protocol_vectors("enrolment-ingest")):
        clock, expected = line.split(" -> ")
        now = datetime.strptime(clock, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        with Registrar(tmp_path / str(number), keys=leader) as instance:
            result = instance.ingest(envelope_text.encode(), now=now)
        if expected.startswith("accepted"):
            tokens = " ".join(f"{t.slot}={t.token}" for t in result.tokens)
            assert f"accepted host_id {result.host_id} tokens {tokens}" == expected, result
        else:
            assert result.reason == expected, result
