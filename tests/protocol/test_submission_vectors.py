"""The submission vectors published in docs/PROTOCOL.md section 10 hold for this code, and the
real ``age`` CLI opens a sealed submission as it travels on the wire."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pyrage import x25519

from cooee_agent.agent.submitting import dr_record, pr_record
from cooee_agent.leader import audit
from cooee_agent.protocol import b64
from cooee_agent.protocol.envelope import open_signed_record, sign_record
from cooee_agent.protocol.keys import AgentKeys, LeaderKeys
from cooee_agent.protocol.schema import canonical
from cooee_agent.protocol.sealing import seal_to_leader
from cooee_agent.protocol.submissions import (
    DrRecord,
    PrRecord,
    Receipt,
    submission_digest,
)

Vectors = Callable[[str], list[str]]
NOW = "2026-01-31T12:00:06Z"


def _keys(protocol_vectors: Vectors) -> tuple[AgentKeys, LeaderKeys]:
    named = dict(line.split(" ", 1) for line in protocol_vectors("enrolment-keys"))
    agent = AgentKeys(
        signing=Ed25519PrivateKey.from_private_bytes(bytes.fromhex(named["agent-ed25519-seed"])),
        identity=x25519.Identity.from_str(named["agent-age-identity"]),
    )
    leader = LeaderKeys(
        signing=Ed25519PrivateKey.from_private_bytes(bytes.fromhex(named["leader-ed25519-seed"])),
        identities=(x25519.Identity.from_str(named["leader-age-identity"]),),
    )
    return agent, leader


def vector_pr() -> dict[str, Any]:
    return pr_record(
        title="Say what the mesh is",
        address="ucxl://any:admin@SLURP:context/#/docs/mesh.md",
        change=b"--- a/mesh.md\n+++ b/mesh.md\n@@ -1 +1 @@\n-A mesh.\n+A gossipsub mesh.\n",
        form="diff",
        description="The old text\tsaid nothing.\n",
        nonce="101112131415161718191a1b1c1d1e1f",
        issued_at="2026-01-31T12:00:00Z",
    )


def vector_dr() -> dict[str, Any]:
    return dr_record(
        title="Gossipsub carries COOEE",
        status="accepted",
        context="Agents must reach the Leader through relays.\n",
        decision="Use libp2p gossipsub v1.1 with signed messages.\n",
        consequences="Every peer relays; bodies are sealed.\n",
        addresses=["ucxl://any:admin@COOEE:mesh/#/docs/mesh.md"],
        supersedes=None,
        nonce="202122232425262728292a2b2c2d2e2f",
        issued_at="2026-01-31T12:00:00Z",
    )


def vector_receipt(agent: AgentKeys, digest: str) -> dict[str, Any]:
    return {
        "schema": 1,
        "kind": "receipt",
        "nonce": "303132333435363738393a3b3c3d3e3f",
        "issued_at": NOW,
        "agent_key": b64.encode(agent.verify_key),
        "submission": "101112131415161718191a1b1c1d1e1f",
        "submission_kind": "pr",
        "digest": digest,
        "outcome": "received",
        "reason": "received",
        "detail": "stored as audit entry 1",
        "audit_seq": 1,
    }


def vector_log(agent: AgentKeys, leader: LeaderKeys) -> list[str]:
    """The audit log of the PR vector received and receipted, exported (PROTOCOL.md 10.4)."""
    signed = sign_record(vector_pr(), agent.signing)
    digest = submission_digest(signed)
    db = sqlite3.connect(":memory:")
    db.executescript(audit.SCHEMA)
    audit.append(
        db,
        "submission",
        {
            "id": "101112131415161718191a1b1c1d1e1f",
            "kind": "pr",
            "sender": b64.encode(agent.verify_key),
            "host_id": 0,
            "hostname": "gpu-node-01.lab",
            "tokens": ["4001Y"],
            "received_at": NOW,
            "digest": digest,
            "signed_record": signed,
        },
        at=NOW,
        key=leader.signing,
    )
    audit.append(
        db, "receipt", {"receipt": vector_receipt(agent, digest)}, at=NOW, key=leader.signing
    )
    return [canonical(line).decode() for line in audit.export_lines(db)]


def test_record_vectors_are_canonical_and_valid(protocol_vectors: Vectors) -> None:
    (pr_text,) = protocol_vectors("submission-pr-record")
    (dr_text,) = protocol_vectors("submission-dr-record")
    assert canonical(vector_pr()).decode() == pr_text
    assert canonical(vector_dr()).decode() == dr_text
    msgspec.convert(json.loads(pr_text), PrRecord, strict=True)
    msgspec.convert(json.loads(dr_text), DrRecord, strict=True)


def test_signed_record_and_digest_vectors(protocol_vectors: Vectors) -> None:
    agent, _ = _keys(protocol_vectors)
    (signed_text,) = protocol_vectors("submission-pr-signed-record")
    (digest_line,) = protocol_vectors("submission-pr-digest")
    signed = sign_record(vector_pr(), agent.signing)
    assert canonical(signed).decode() == signed_text
    assert submission_digest(signed) == digest_line
    assert hashlib.sha256(signed_text.encode()).hexdigest() == digest_line
    record, signer = open_signed_record(signed_text.encode())
    assert (record, signer) == (vector_pr(), agent.verify_key)


def test_receipt_vector(protocol_vectors: Vectors) -> None:
    agent, leader = _keys(protocol_vectors)
    (digest,) = protocol_vectors("submission-pr-digest")
    (signed_text,) = protocol_vectors("submission-receipt-signed-record")
    receipt = vector_receipt(agent, digest)
    msgspec.convert(receipt, Receipt, strict=True)
    assert canonical(sign_record(receipt, leader.signing)).decode() == signed_text


def test_audit_log_vector_and_its_verification(protocol_vectors: Vectors) -> None:
    agent, leader = _keys(protocol_vectors)
    lines = protocol_vectors("submission-audit-log")
    assert vector_log(agent, leader) == lines
    parsed = [json.loads(line) for line in lines]
    verdict = audit.verify(parsed[:-1], parsed[-1]["head"], leader.bundle.verify_key)
    assert verdict.ok and verdict.entries == 2
    # Any change to an exported entry is named by its seq.
    parsed[0]["payload"]["hostname"] = "elsewhere.lab"
    verdict = audit.verify(parsed[:-1], parsed[-1]["head"], leader.bundle.verify_key)
    assert (verdict.ok, verdict.broken_seq) == (False, 1)


@pytest.mark.skipif(shutil.which("age") is None, reason="the age CLI is not installed")
def test_the_age_cli_opens_a_sealed_submission_from_the_wire(
    protocol_vectors: Vectors, tmp_path: Path
) -> None:
    agent, leader = _keys(protocol_vectors)
    named = dict(line.split(" ", 1) for line in protocol_vectors("enrolment-keys"))
    identity = tmp_path / "leader.age"
    identity.write_text(named["leader-age-identity"] + "\n")
    identity.chmod(0o600)
    envelope = json.loads(seal_to_leader("dr", vector_dr(), agent, leader.bundle))
    assert envelope["kind"] == "dr" and "Gossipsub" not in envelope["body"]
    opened = subprocess.run(
        ["age", "--decrypt", "--identity", str(identity)],
        input=envelope["body"].encode(),
        capture_output=True,
        timeout=30,
        check=True,
    )
    record, signer = open_signed_record(opened.stdout)
    assert (record, signer) == (vector_dr(), agent.verify_key)
