"""Interop with the real age CLI: the agent's sealed body opens with `age -d -i`, and a signed
record encrypted by `age -r … -a` opens in the Leader."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from enrolment_factory import record, signed

from cooee_agent.leader.registrar import Registrar
from cooee_agent.protocol import b64
from cooee_agent.protocol.envelope import make_envelope
from cooee_agent.protocol.keys import AgentKeys, LeaderKeys
from cooee_agent.protocol.sealing import address_for, seal_enrolment

pytestmark = pytest.mark.skipif(shutil.which("age") is None, reason="the age CLI is not installed")


def test_the_sealed_body_decrypts_with_the_age_cli(
    keys: AgentKeys, leader_keys: LeaderKeys, leader_dir: Path
) -> None:
    rec = record(keys)
    envelope = json.loads(seal_enrolment(rec, keys, leader_keys.bundle))
    identity = leader_dir / "leader-identity.age"
    plain = subprocess.run(
        ["age", "-d", "-i", str(identity)],
        input=envelope["body"].encode(),
        capture_output=True,
        check=True,
    ).stdout
    inner = json.loads(plain)
    assert inner["record"] == rec.to_dict()
    assert inner["signer"] == b64.encode(keys.verify_key)


def test_a_record_encrypted_by_the_age_cli_opens_in_the_leader(
    keys: AgentKeys, leader_keys: LeaderKeys, leader_dir: Path
) -> None:
    (recipient,) = leader_keys.bundle.recipients
    body = subprocess.run(
        ["age", "-r", recipient, "-a"],
        input=signed(record(keys).to_dict(), keys.signing),
        capture_output=True,
        check=True,
    ).stdout.decode("ascii")
    address = address_for("enrolment", keys.agent_id)
    envelope = make_envelope("enrolment", address, body, keys.signing).to_bytes()
    with Registrar(leader_dir) as leader:
        result = leader.ingest(envelope)
    assert result.accepted, result.detail
    assert result.host_id == 0


def test_the_agent_identity_file_is_read_by_the_age_cli(tmp_path: Path) -> None:
    from cooee_agent.protocol.keys import load_or_create_agent_keys

    agent = load_or_create_agent_keys(tmp_path)
    sealed = subprocess.run(
        ["age", "-r", agent.recipient], input=b"hello", capture_output=True, check=True
    ).stdout
    opened = subprocess.run(
        ["age", "-d", "-i", str(tmp_path / "agent-identity.age")],
        input=sealed,
        capture_output=True,
        check=True,
    ).stdout
    assert opened == b"hello"
