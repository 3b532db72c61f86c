"""The operator's admission verbs through real processes: ``leader token create|list|revoke``,
``leader approve --key`` with the fingerprint it pins, ``leader list`` showing pending keys, and
``leader forget``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from enrolment_factory import agent_keys, record
from process_support import cli

from cooee_agent.leader.registrar import Registrar
from cooee_agent.leader.registry.pending import key_fingerprint
from cooee_agent.protocol import b64
from cooee_agent.protocol.sealing import seal_enrolment

pytestmark = pytest.mark.slow


def leader(*args: str, state_dir: Path) -> str:
    done = cli("leader", *args, "--state-dir", str(state_dir))
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_tokens_are_created_listed_and_revoked(leader_dir: Path) -> None:
    made = json.loads(
        leader("token", "create", "--uses", "2", "--expires", "12h", "--json", state_dir=leader_dir)
    )
    assert len(made["token"]) == 32 and made["uses"] == 2 and made["state"] == "live"
    listed = json.loads(leader("token", "list", "--json", state_dir=leader_dir))
    assert [t["id"] for t in listed] == [made["id"]]
    assert made["token"] not in json.dumps(listed)
    assert "revoked join token" in leader("token", "revoke", str(made["id"]), state_dir=leader_dir)
    assert "revoked" in leader("token", "list", state_dir=leader_dir)
    bad = cli("leader", "token", "create", "--expires", "soon", "--state-dir", str(leader_dir))
    assert bad.returncode == 2 and "--expires must be" in bad.stderr


def test_approve_names_the_key_it_pins_and_forget_frees_the_id(leader_dir: Path) -> None:
    now = datetime.now(UTC)
    first, second = agent_keys(), agent_keys()
    with Registrar(leader_dir) as registrar:
        registrar.registry.create_join_token(now=now)
        for n, keys in enumerate((first, second)):
            rec = record(keys, host=7, issued_at=now + timedelta(seconds=n))
            envelope = seal_enrolment(rec, keys, registrar.keys.bundle, sent_at=now)
            assert registrar.ingest(envelope, now=now + timedelta(seconds=n)).reason == (
                "not-approved"
            )
    fingerprints = [key_fingerprint(b64.encode(k.verify_key)) for k in (first, second)]
    listed = leader("list", state_dir=leader_dir)
    assert all(f"pending key {f}" in listed for f in fingerprints)
    refused = cli("leader", "approve", "node0007.lab", "--state-dir", str(leader_dir))
    assert refused.returncode == 1 and "--key" in refused.stderr
    approved = leader("approve", "node0007.lab", "--key", fingerprints[1], state_dir=leader_dir)
    assert f"pinning key {fingerprints[1]}" in approved
    assert "revoked" in leader("revoke", "0", state_dir=leader_dir)
    early = cli("leader", "forget", "0", "--state-dir", str(leader_dir))
    assert early.returncode == 1 and "can be forgotten from" in early.stderr
    forgot = leader("forget", "0", "--grace-days", "0", state_dir=leader_dir)
    assert "host_id 0 is free" in forgot
    assert json.loads(leader("list", "--json", state_dir=leader_dir)) == []
