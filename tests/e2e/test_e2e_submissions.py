"""PR and DR submissions between real processes on 127.0.0.1: ``cooee-agent run`` and ``leader
serve``, driven through the CLI. A PR and a DR are receipted, accepted and rejected, and the
agent's ``submissions`` shows the outcome; the audit log verifies, exports, and a tampered row
is named. An agent SIGKILLed after its submission was published, before the receipt reached it,
loses nothing and duplicates nothing. The go-libp2p peer, as an agent written from the protocol
text (filippo.io/age sealing), submits a DR and checks the Leader's signed receipt."""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from e2eharness import Agent, World, until
from meshharness import Spawner
from process_support import cli

from cooee_agent.leader.submission_book import SUBMISSIONS_FILE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ADDRESS = "ucxl://any:admin@SLURP:context/#/docs/mesh.md"


def agent_submissions(agent: Agent) -> dict[str, dict[str, Any]]:
    result = cli("submissions", "--json", "--config", str(agent.config))
    assert result.returncode == 0, result.stderr
    return {entry["id"]: entry for entry in json.loads(result.stdout)}


def leader_submissions(world: World, *extra: str) -> list[dict[str, Any]]:
    result = cli("leader", "submissions", "--json", "--state-dir", str(world.leader_dir), *extra)
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


def in_state(agent: Agent, submission_id: str, state: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        entry = agent_submissions(agent).get(submission_id)
        return entry if entry is not None and entry["state"] == state else None

    return until(probe, f"{submission_id} {state} at {agent.name} (log: {agent.log})")


def submit_pr(agent: Agent, tmp: Path) -> dict[str, Any]:
    (tmp / "change.diff").write_bytes(b"--- a/mesh.md\n+++ b/mesh.md\n@@ -1 +1 @@\n-a\n+b\n")
    (tmp / "why.txt").write_text("The mesh text was wrong.\n")
    result = cli(
        "submit", "pr", "--config", str(agent.config), "--title", "Fix the mesh text",
        "--address", ADDRESS, "--diff", str(tmp / "change.diff"),
        "--description-file", str(tmp / "why.txt"), "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def submit_dr(agent: Agent, tmp: Path) -> dict[str, Any]:
    (tmp / "context.md").write_text("Agents need a channel.\n")
    (tmp / "decision.md").write_text("Use gossipsub.\n")
    result = cli(
        "submit", "dr", "--config", str(agent.config), "--title", "Gossipsub for COOEE",
        "--status", "proposed", "--context-file", str(tmp / "context.md"),
        "--decision-file", str(tmp / "decision.md"), "--address", ADDRESS, "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_a_pr_and_a_dr_are_receipted_decided_and_audited(world: World, tmp_path: Path) -> None:
    world.start_leader()
    agent = world.agent("alpha").start()
    agent.enrolled()
    pr = submit_pr(agent, tmp_path)
    dr = submit_dr(agent, tmp_path)
    assert pr["state"] == dr["state"] == "queued"

    received = in_state(agent, pr["id"], "received")
    assert received["audit_seq"] is not None and received["digest"] == pr["digest"]
    in_state(agent, dr["id"], "received")
    listed = {s["id"]: s for s in leader_submissions(world)}
    assert set(listed) == {pr["id"], dr["id"]}
    assert listed[pr["id"]]["hostname"] == agent.hostname
    assert listed[pr["id"]]["digest"] == pr["digest"] and listed[pr["id"]]["tokens"]

    leader = str(world.leader_dir)
    accept = cli("leader", "submission", "accept", pr["id"][:12], "--reason", "merged",
                 "--state-dir", leader)  # fmt: skip
    assert accept.returncode == 0, accept.stderr
    reject = cli("leader", "submission", "reject", dr["id"], "--reason", "not yet",
                 "--state-dir", leader)  # fmt: skip
    assert reject.returncode == 0, reject.stderr
    assert in_state(agent, pr["id"], "accepted")["reason"] == "merged"
    assert in_state(agent, dr["id"], "rejected")["reason"] == "not yet"
    assert [s["id"] for s in leader_submissions(world, "--state", "accepted")] == [pr["id"]]

    shown = cli("leader", "submission", "show", dr["id"], "--json", "--state-dir", leader)
    assert json.loads(shown.stdout)["record"]["decision"] == "Use gossipsub.\n"

    verified = cli("leader", "audit", "verify", "--state-dir", leader)
    assert verified.returncode == 0 and "6 entries" in verified.stdout, verified.stderr
    exported = cli("leader", "audit", "export", "--state-dir", leader)
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [line.get("event") for line in lines[:-1]] == ["submission", "receipt"] * 2 + [
        "decision"
    ] * 2
    assert lines[-1]["head"]["seq"] == 6

    # An edit made straight in the SQLite file is named by its entry.
    db = sqlite3.connect(world.leader_dir / SUBMISSIONS_FILE)
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("UPDATE audit SET at = '2020-01-01T00:00:00Z' WHERE seq = 5")
    db.commit()
    db.close()
    broken = cli("leader", "audit", "verify", "--state-dir", leader)
    assert broken.returncode == 1 and "entry 5" in broken.stderr, broken.stderr


def test_an_agent_killed_before_its_receipt_loses_and_duplicates_nothing(
    world: World, tmp_path: Path
) -> None:
    from cooee_agent.agent.submitting import KEY_PREFIX
    from cooee_agent.bus.mesh_config import MeshConfig
    from cooee_agent.bus.mesh_transport import start_mesh
    from cooee_agent.bus.outbox import Outbox
    from cooee_agent.protocol.kinds import TOPIC_SUBMISSION

    world.start_leader()
    agent = world.agent("bravo").start()
    agent.enrolled()
    world.stop_leader(signal.SIGTERM)
    pr = submit_pr(agent, tmp_path)
    agent.kill()  # SIGKILL: the submission is only in its outbox
    with Outbox.open_in(agent.state_dir) as outbox:
        item = outbox.get(KEY_PREFIX + pr["id"])
    assert item is not None

    # It was published, and the Leader stored it, but the receipt never reached the agent.
    world.start_leader()
    mesh = start_mesh(
        MeshConfig(
            state_dir=tmp_path / "wire",
            listen=("/ip4/127.0.0.1/tcp/0",),
            bootstrap=(world.leader_addr,),
            redial_cap=1.0,
        )
    )
    try:

        def stored() -> list[dict[str, Any]] | None:
            if mesh.topic_peers(TOPIC_SUBMISSION):
                mesh.publish(TOPIC_SUBMISSION, item.data)
            return (
                leader_submissions(world)
                if (world.leader_dir / SUBMISSIONS_FILE).exists()
                else None
            )

        until(stored, "the submission stored at the Leader")
    finally:
        mesh.close()
    assert agent_submissions(agent)[pr["id"]]["state"] == "queued"

    agent.start()  # resends the same sealed submission; the Leader answers with its receipt
    in_state(agent, pr["id"], "received")
    (only,) = leader_submissions(world)
    assert only["id"] == pr["id"]
    exported = cli("leader", "audit", "export", "--state-dir", str(world.leader_dir))
    events = [json.loads(line).get("event") for line in exported.stdout.splitlines()]
    assert events == ["submission", "receipt", None]  # the head last; nothing twice


def test_the_go_peer_submits_a_dr_sealed_with_filippo_age_and_gets_its_receipt(
    world: World, peers: Spawner, tmp_path: Path
) -> None:
    import os
    import secrets

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from pyrage import x25519

    from cooee_agent.agent.submitting import dr_record
    from cooee_agent.protocol.envelope import sign_record
    from cooee_agent.protocol.keys import AgentKeys, parse_bundle
    from cooee_agent.protocol.schema import canonical
    from cooee_agent.protocol.sealing import address_for, seal_enrolment
    from cooee_agent.protocol.submissions import submission_digest

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "protocol"))
    from enrolment_factory import record as enrolment

    seed = secrets.token_bytes(32)
    keys = AgentKeys(Ed25519PrivateKey.from_private_bytes(seed), x25519.Identity.generate())
    sealed = tmp_path / "go-agent.enrolment"
    sealed.write_bytes(seal_enrolment(enrolment(keys, 7), keys, parse_bundle(world.bundle)))
    ingested = cli("leader", "ingest", str(sealed), "--state-dir", str(world.leader_dir))
    assert ingested.returncode == 0, ingested.stderr
    world.start_leader()

    dr = dr_record(title="Go speaks COOEE", status="proposed", context="Interop.\n",
                   decision="Keep a Go peer in the tests.\n", addresses=[ADDRESS])  # fmt: skip
    (tmp_path / "dr.json").write_bytes(canonical(dr))
    identity = tmp_path / "go-agent.age"
    identity.write_text(str(keys.identity) + "\n")
    os.chmod(identity, 0o600)
    go = peers.go(
        "go-agent",
        "submit",
        bootstrap=(world.leader_addr,),
        age_identity=identity,
        extra=(
            "-record", str(tmp_path / "dr.json"), "-agent-seed", seed.hex(),
            "-leader-bundle", world.bundle, "-address", address_for("dr", keys.agent_id),
        ),
    )  # fmt: skip
    receipt = go.wait_for(lambda e: e["event"] == "receipt", 60, "the Leader's receipt")
    record = receipt["record"]
    assert isinstance(record, dict)
    digest = submission_digest(sign_record(dr, keys.signing))
    assert (record["outcome"], record["digest"], record["audit_seq"]) == ("received", digest, 1)
    (stored,) = leader_submissions(world)
    assert (stored["id"], stored["kind"], stored["digest"]) == (dr["nonce"], "dr", digest)
