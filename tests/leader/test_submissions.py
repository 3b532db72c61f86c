"""PR and DR submissions at the Leader, on real registry and submissions files: stored with their
receipt and audit entries, refused with a reason (nothing stored), decided and audited."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from enrolment_factory import agent_keys, craft, record, signed

from cooee_agent.agent.submitting import (
    Ledger,
    SubmissionTooLarge,
    dr_record,
    pr_record,
    queue_submission,
    seal_submission,
    take_answer,
)
from cooee_agent.bus.outbox import Outbox
from cooee_agent.leader.registrar import Registrar
from cooee_agent.leader.submission_book import SUBMISSIONS_FILE, SubmissionBook, SubmissionError
from cooee_agent.leader.submissions import hear_submission
from cooee_agent.protocol.keys import AgentKeys, LeaderKeys, generate_leader_keys
from cooee_agent.protocol.records import now_text
from cooee_agent.protocol.schema import canonical
from cooee_agent.protocol.sealing import open_from_leader, seal_enrolment, seal_to_leader
from cooee_agent.protocol.submissions import submission_digest

ADDRESS = "ucxl://any:admin@SLURP:context/#/docs/architecture.md"
DIFF = b"--- a/architecture.md\n+++ b/architecture.md\n@@ -1 +1 @@\n-old\n+new\twith a tab\n"


class World:
    def __init__(self, leader_dir: Path, leader_keys: LeaderKeys) -> None:
        self.dir = leader_dir
        self.keys = leader_keys
        self.registrar = Registrar(leader_dir)
        self.book = SubmissionBook(leader_dir / SUBMISSIONS_FILE)

    def enrol(self, keys: AgentKeys, host: int = 1) -> None:
        result = self.registrar.ingest(seal_enrolment(record(keys, host), keys, self.keys.bundle))
        assert result.accepted, result

    def hear(self, data: bytes, now: datetime | None = None):  # type: ignore[no-untyped-def]
        return hear_submission(
            self.book,
            self.registrar.registry.path,
            self.keys,
            data,
            now=now or datetime.now(UTC),
        )

    def close(self) -> None:
        self.book.close()
        self.registrar.close()


@pytest.fixture
def world(leader_dir: Path, leader_keys: LeaderKeys):  # type: ignore[no-untyped-def]
    w = World(leader_dir, leader_keys)
    yield w
    w.close()


def a_pr(**kwargs: object) -> dict[str, object]:
    return pr_record(
        title="Say what the mesh is",
        address=ADDRESS,
        change=DIFF,
        form="diff",
        description="Why:\n\tthe old text was wrong.",
        **kwargs,  # type: ignore[arg-type]
    )


def a_dr() -> dict[str, object]:
    return dr_record(
        title="Use gossipsub for COOEE",
        status="proposed",
        context="We need a mesh.\nIt must relay.",
        decision="gossipsub v1.1",
        addresses=[ADDRESS],
    )


def test_a_pr_from_an_enrolled_host_is_stored_receipted_and_audited(
    world: World, keys: AgentKeys
) -> None:
    world.enrol(keys)
    pr = a_pr()
    heard = world.hear(seal_to_leader("pr", pr, keys, world.keys.bundle))
    assert (heard.stored, heard.reason) == (True, "received")
    (reply,) = heard.replies
    receipt = open_from_leader(reply, keys, world.keys.bundle, ("receipt",))
    (stored,) = world.book.submissions()
    assert receipt["submission"] == stored.id == pr["nonce"]
    assert receipt["outcome"] == "received" and receipt["audit_seq"] == stored.audit_seq == 1
    assert receipt["digest"] == stored.digest
    assert (stored.hostname, stored.host_id, stored.state) == ("node0001.lab", 0, "received")
    assert stored.tokens and stored.record == pr
    events = [e["event"] for e in world.book.audit_entries()]
    assert events == ["submission", "receipt"]
    assert world.book.verify(world.keys.bundle.verify_key).ok


def test_a_resend_stores_nothing_more_and_gets_the_same_receipt(
    world: World, keys: AgentKeys
) -> None:
    world.enrol(keys)
    data = seal_to_leader("dr", a_dr(), keys, world.keys.bundle)
    first = world.hear(data)
    again = world.hear(data)
    assert (again.stored, again.reason) == (False, "replayed")
    assert again.replies == first.replies
    assert len(world.book.submissions()) == 1 and len(list(world.book.audit_entries())) == 2


def test_another_record_reusing_an_id_is_refused_without_an_answer(
    world: World, keys: AgentKeys
) -> None:
    world.enrol(keys)
    pr = a_pr()
    world.hear(seal_to_leader("pr", pr, keys, world.keys.bundle))
    forged = {**pr, "title": "Something else"}
    heard = world.hear(seal_to_leader("pr", forged, keys, world.keys.bundle))
    assert (heard.reason, heard.replies) == ("replayed", ())
    assert world.book.get(pr["nonce"]).title == "Say what the mesh is"  # type: ignore[arg-type]


def test_a_revoked_host_gets_a_refusal_receipt_and_nothing_is_stored(
    world: World, keys: AgentKeys
) -> None:
    world.enrol(keys)
    world.registrar.registry.revoke("node0001.lab")
    heard = world.hear(seal_to_leader("pr", a_pr(), keys, world.keys.bundle))
    assert (heard.stored, heard.reason) == (False, "revoked")
    (reply,) = heard.replies
    receipt = open_from_leader(reply, keys, world.keys.bundle, ("receipt",))
    assert (receipt["outcome"], receipt["reason"], receipt["audit_seq"]) == (
        "refused",
        "revoked",
        None,
    )
    assert world.book.submissions() == [] and list(world.book.audit_entries()) == []


def test_a_host_held_for_approval_is_refused(
    leader_dir: Path, leader_keys: LeaderKeys, keys: AgentKeys
) -> None:
    (leader_dir / "join-tokens").write_text("secret-token\n")
    (leader_dir / "join-tokens").chmod(0o600)  # a file holding secrets must be private
    w = World(leader_dir, leader_keys)
    try:
        result = w.registrar.ingest(seal_enrolment(record(keys, 1), keys, leader_keys.bundle))
        assert result.reason == "not-approved"
        heard = w.hear(seal_to_leader("dr", a_dr(), keys, leader_keys.bundle))
        assert (heard.stored, heard.reason) == (False, "not-approved")
        assert len(heard.replies) == 1 and w.book.submissions() == []
    finally:
        w.close()


def test_an_unknown_key_is_dropped_unanswered(world: World) -> None:
    stranger = agent_keys()
    heard = world.hear(seal_to_leader("pr", a_pr(), stranger, world.keys.bundle))
    assert (heard.reason, heard.replies) == ("unknown-key", ())
    assert world.book.submissions() == []


def test_wrongly_sealed_unsigned_and_stale_submissions_are_refused(
    world: World, keys: AgentKeys, tmp_path: Path
) -> None:
    world.enrol(keys)
    other_leader = generate_leader_keys(tmp_path / "other")
    wrong = world.hear(seal_to_leader("pr", a_pr(), keys, other_leader.bundle))
    assert wrong.reason == "wrong-recipient"
    # Signed by another key than the envelope's sender: the record is not the sender's.
    impostor = craft(
        signed(a_pr(), agent_keys().signing), keys.signing, world.keys.bundle, kind="pr"
    )
    assert world.hear(impostor).reason == "key-mismatch"
    # An envelope whose signature does not verify.
    good = seal_to_leader("pr", a_pr(), keys, world.keys.bundle)
    value = json.loads(good)
    value["sig"] = ("B" if value["sig"][0] == "A" else "A") + value["sig"][1:]
    assert world.hear(canonical(value)).reason == "bad-signature"
    # Unsigned: no sig at all.
    del value["sig"]
    assert world.hear(canonical(value)).reason == "schema"
    later = datetime.now(UTC) + timedelta(hours=1)
    assert world.hear(good, now=later).reason == "stale"
    assert world.book.submissions() == []


def test_an_oversized_submission_is_refused_before_sending_naming_the_limit(
    world: World, keys: AgentKeys, tmp_path: Path
) -> None:
    big = pr_record(title="big", address=ADDRESS, change=b"x" * 45_000, form="document")
    with pytest.raises(SubmissionTooLarge, match="65536-byte limit"):
        seal_submission(big, keys, world.keys.bundle)
    with Outbox.open_in(tmp_path / "agent") as outbox, Ledger.open_in(tmp_path / "agent") as led:
        with pytest.raises(SubmissionTooLarge):
            queue_submission(outbox, led, keys, world.keys.bundle, big)
        assert outbox.depth() == 0 and led.items() == []
    # One that fits is carried whole.
    fits = pr_record(title="fits", address=ADDRESS, change=b"y" * 30_000, form="document")
    world.enrol(keys)
    assert world.hear(seal_submission(fits, keys, world.keys.bundle)).reason == "received"


def test_the_agent_ledger_follows_receipt_and_decision(
    world: World, keys: AgentKeys, tmp_path: Path
) -> None:
    world.enrol(keys)
    state = tmp_path / "agent"
    bundles = [world.keys.bundle]
    with Outbox.open_in(state) as outbox, Ledger.open_in(state) as ledger:
        pr = a_pr()
        digest = queue_submission(outbox, ledger, keys, world.keys.bundle, pr)
        assert ledger.get(pr["nonce"]).state == "queued"  # type: ignore[union-attr,arg-type]
        (item,) = outbox.items()
        heard = world.hear(item.data)
        assert world.book.get(str(pr["nonce"])).digest == digest
        entry = take_answer(heard.replies[0], keys, bundles, outbox, ledger)
        assert entry is not None and (entry.state, entry.audit_seq) == ("received", 1)
        assert outbox.depth() == 0
        decided = world.book.decide(
            str(pr["nonce"])[:10], "rejected", "not now", world.keys, now=datetime.now(UTC)
        )
        assert (decided.state, decided.decision_seq) == ("rejected", 3)
        ((_, envelope),) = world.book.unsent_decisions()
        entry = take_answer(envelope, keys, bundles, outbox, ledger)
        assert entry is not None and (entry.state, entry.reason) == ("rejected", "not now")
        # A late copy of the receipt does not undo the decision.
        take_answer(heard.replies[0], keys, bundles, outbox, ledger)
        assert ledger.get(str(pr["nonce"])).state == "rejected"  # type: ignore[union-attr]
        # Others' answers and garbage are ignored.
        assert take_answer(b"{}", agent_keys(), bundles, outbox, ledger) is None
    with pytest.raises(SubmissionError, match="was rejected"):
        world.book.decide(str(pr["nonce"]), "accepted", "ok", world.keys, now=datetime.now(UTC))
    assert [e["event"] for e in world.book.audit_entries()] == [
        "submission",
        "receipt",
        "decision",
    ]
    assert world.book.verify(world.keys.bundle.verify_key).ok


def _tamper(path: Path, sql: str, *args: object) -> None:
    db = sqlite3.connect(path)
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("DROP TRIGGER audit_no_delete")
    db.execute(sql, args)
    db.commit()
    db.close()


def _filled(world: World, keys: AgentKeys, count: int) -> None:
    world.enrol(keys)
    for _ in range(count):
        world.hear(seal_to_leader("dr", a_dr(), keys, world.keys.bundle))


def test_editing_one_audit_row_breaks_verification_at_that_entry(
    world: World, keys: AgentKeys
) -> None:
    _filled(world, keys, 3)
    assert world.book.verify(world.keys.bundle.verify_key).ok
    plain = sqlite3.connect(world.book.path, isolation_level=None)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        plain.execute("UPDATE audit SET at = 'x' WHERE seq = 3")
    plain.close()
    _tamper(
        world.book.path,
        "UPDATE audit SET payload = replace(payload, 'proposed', 'accepted') WHERE seq = 3",
    )
    verdict = world.book.verify(world.keys.bundle.verify_key)
    assert (verdict.ok, verdict.broken_seq) == (False, 3)
    assert "hash" in verdict.problem


def test_deleting_the_last_entry_is_caught_by_the_signed_head(
    world: World, keys: AgentKeys
) -> None:
    _filled(world, keys, 2)
    _tamper(world.book.path, "DELETE FROM audit WHERE seq = 4")
    verdict = world.book.verify(world.keys.bundle.verify_key)
    assert (verdict.ok, verdict.broken_seq) == (False, 4)
    assert "missing" in verdict.problem


def test_a_head_signed_by_another_key_is_refused(world: World, keys: AgentKeys) -> None:
    _filled(world, keys, 1)
    other = generate_leader_keys(world.dir.parent / "other")
    verdict = world.book.verify(other.bundle.verify_key)
    assert not verdict.ok and "not signed" in verdict.problem


def test_digest_is_of_the_signed_record(keys: AgentKeys) -> None:
    from cooee_agent.protocol.envelope import sign_record

    pr = a_pr(issued_at=now_text())
    assert len(submission_digest(sign_record(pr, keys.signing))) == 64


def test_a_decision_reason_is_bounded_and_an_unknown_id_named(
    world: World, keys: AgentKeys
) -> None:
    world.enrol(keys)
    pr = a_pr()
    world.hear(seal_to_leader("pr", pr, keys, world.keys.bundle))
    now = datetime.now(UTC)
    with pytest.raises(SubmissionError, match="1 to 1024 characters"):
        world.book.decide(str(pr["nonce"]), "accepted", "x" * 1025, world.keys, now=now)
    with pytest.raises(SubmissionError, match="1 to 1024 characters"):
        world.book.decide(str(pr["nonce"]), "accepted", "   ", world.keys, now=now)
    with pytest.raises(SubmissionError, match="no submission"):
        world.book.decide("0" * 32, "accepted", "ok", world.keys, now=now)
    decided = world.book.decide(str(pr["nonce"]), "accepted", "y" * 1024, world.keys, now=now)
    assert decided.state == "accepted"


def test_a_queued_submission_missing_from_the_outbox_is_put_back(
    world: World, keys: AgentKeys, tmp_path: Path
) -> None:
    from cooee_agent.agent.submitting import KEY_PREFIX, requeue_missing

    state = tmp_path / "agent"
    with Outbox.open_in(state) as outbox, Ledger.open_in(state) as ledger:
        pr = a_pr()
        queue_submission(outbox, ledger, keys, world.keys.bundle, pr)
        (item,) = outbox.items()
        outbox.ack(item.key)  # as if the process died between the ledger and the outbox write
        assert requeue_missing(outbox, ledger) == 1
        assert outbox.get(KEY_PREFIX + str(pr["nonce"])).data == item.data  # type: ignore[union-attr]
        assert requeue_missing(outbox, ledger) == 0
