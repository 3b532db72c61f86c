"""The Leader's submissions file: each PR and DR received, its receipt and decision (sealed, kept
for resends), and the audit log of all three, in one SQLite file of the state directory.

A submission, its receipt and their two audit entries are written in one transaction; so are a
decision and its entry. One connection, used by one thread at a time.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cooee_agent.leader import audit
from cooee_agent.leader.database import open_database, transaction
from cooee_agent.leader.errors import RegistryError
from cooee_agent.protocol.keys import LeaderKeys
from cooee_agent.protocol.records import new_nonce, now_text
from cooee_agent.protocol.schema import canonical, loads
from cooee_agent.protocol.sealing import seal_to_agent
from cooee_agent.protocol.submissions import submission_digest

log = logging.getLogger(__name__)

SUBMISSIONS_FILE = "submissions.sqlite3"
STATES = ("received", "accepted", "rejected")
MAX_REASON = 1024  # a decision's reason: the record's LongText

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS submissions (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('pr', 'dr')),
    state TEXT NOT NULL CHECK (state IN ('received', 'accepted', 'rejected')),
    title TEXT NOT NULL,
    sender TEXT NOT NULL,
    agent_age TEXT NOT NULL,
    host_id INTEGER NOT NULL,
    hostname TEXT NOT NULL,
    tokens TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    digest TEXT NOT NULL,
    signed_record TEXT NOT NULL,
    audit_seq INTEGER NOT NULL,
    receipt BLOB NOT NULL,
    decided_at TEXT,
    reason TEXT,
    decision_seq INTEGER,
    decision BLOB,
    decision_sent_at TEXT
);
CREATE INDEX IF NOT EXISTS submissions_state ON submissions (state);
"""
    + audit.SCHEMA
)


class SubmissionError(RegistryError):
    """No such submission, or it was decided already."""


@dataclass(frozen=True, slots=True)
class Sender:
    """The enrolled host a submission comes from, as the registry knows it."""

    ed25519: str
    age: str  # the recipient its receipt and decision are sealed to
    host_id: int
    hostname: str
    tokens: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Submission:
    id: str
    kind: str
    state: str
    title: str
    sender: str
    host_id: int
    hostname: str
    tokens: tuple[str, ...]
    issued_at: str
    received_at: str
    digest: str
    audit_seq: int
    decided_at: str | None
    reason: str | None
    decision_seq: int | None
    record: dict[str, Any]

    def to_dict(self, *, with_record: bool = False) -> dict[str, Any]:
        value = {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "title": self.title,
            "sender": self.sender,
            "host_id": self.host_id,
            "hostname": self.hostname,
            "tokens": list(self.tokens),
            "issued_at": self.issued_at,
            "received_at": self.received_at,
            "digest": self.digest,
            "audit_seq": self.audit_seq,
            "decided_at": self.decided_at,
            "reason": self.reason,
            "decision_seq": self.decision_seq,
        }
        if with_record:
            value["record"] = self.record
        return value


@dataclass(frozen=True, slots=True)
class Stored:
    """A submission just stored, with the sealed receipt to send."""

    submission: Submission
    receipt: bytes


class SubmissionBook:
    def __init__(self, path: Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = path
        self._db = open_database(path, SCHEMA, busy_timeout_s=busy_timeout_s)
        self._db.executescript(audit.TRIGGERS)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SubmissionBook:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- receiving -----------------------------------------------------------------------------

    def store(
        self,
        record: dict[str, Any],
        signed_record: dict[str, Any],
        sender: Sender,
        keys: LeaderKeys,
        *,
        now: datetime,
    ) -> Stored | None:
        """Store a verified submission and seal its receipt; None when its id was stored before
        (a replay: nothing is written)."""
        stamp = now_text(now)
        digest = submission_digest(signed_record)
        with transaction(self._db) as db:
            if db.execute("SELECT 1 FROM submissions WHERE id = ?", (record["nonce"],)).fetchone():
                return None
            seq = audit.append(
                db,
                "submission",
                {
                    "id": record["nonce"],
                    "kind": record["kind"],
                    "sender": sender.ed25519,
                    "host_id": sender.host_id,
                    "hostname": sender.hostname,
                    "tokens": list(sender.tokens),
                    "received_at": stamp,
                    "digest": digest,
                    "signed_record": signed_record,
                },
                at=stamp,
                key=keys.signing,
            )
            receipt = receipt_record(
                record, sender.ed25519, digest, now=now, audit_seq=seq, reason="received"
            )
            envelope = seal_to_agent("receipt", receipt, keys, sender.age, sent_at=now)
            audit.append(db, "receipt", {"receipt": receipt}, at=stamp, key=keys.signing)
            db.execute(
                "INSERT INTO submissions (id, kind, state, title, sender, agent_age, host_id,"
                " hostname, tokens, issued_at, received_at, digest, signed_record, audit_seq,"
                " receipt) VALUES (?, ?, 'received', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record["nonce"],
                    record["kind"],
                    record["title"],
                    sender.ed25519,
                    sender.age,
                    sender.host_id,
                    sender.hostname,
                    " ".join(sender.tokens),
                    record["issued_at"],
                    stamp,
                    digest,
                    canonical(signed_record).decode("utf-8"),
                    seq,
                    envelope,
                ),
            )
            row = db.execute(
                "SELECT * FROM submissions WHERE id = ?", (record["nonce"],)
            ).fetchone()
        return Stored(_submission(row), envelope)

    def answers(self, submission_id: str, digest: str) -> list[bytes]:
        """What was sent for this stored submission (receipt, then decision if any), to send
        again when the agent resends it; nothing when the digest differs (another record reusing
        the id)."""
        row = self._db.execute(
            "SELECT digest, receipt, decision FROM submissions WHERE id = ?", (submission_id,)
        ).fetchone()
        if row is None or row["digest"] != digest:
            return []
        return [bytes(row["receipt"])] + ([bytes(row["decision"])] if row["decision"] else [])

    # -- deciding ------------------------------------------------------------------------------

    def decide(
        self, selector: str, decision: str, reason: str, keys: LeaderKeys, *, now: datetime
    ) -> Submission:
        """Accept or reject a received submission: the signed decision is sealed to its sender
        and kept until a serving Leader sends it."""
        if decision not in ("accepted", "rejected"):
            raise SubmissionError(f"a decision is accepted or rejected, not {decision!r}")
        reason = " ".join(reason.split())
        if not reason or len(reason) > MAX_REASON:
            raise SubmissionError(f"--reason must be 1 to {MAX_REASON} characters")
        stamp = now_text(now)
        with transaction(self._db) as db:
            row = _find(db, selector)
            if row["state"] != "received":
                raise SubmissionError(
                    f"submission {row['id']} was {row['state']} at {row['decided_at']}"
                )
            seq = audit.next_seq(db)
            record = {
                "schema": 1,
                "kind": "decision",
                "nonce": new_nonce(),
                "issued_at": stamp,
                "agent_key": row["sender"],
                "submission": row["id"],
                "submission_kind": row["kind"],
                "digest": row["digest"],
                "decision": decision,
                "reason": reason,
                "audit_seq": seq,
            }
            envelope = seal_to_agent("decision", record, keys, row["agent_age"], sent_at=now)
            appended = audit.append(
                db, "decision", {"decision": record}, at=stamp, key=keys.signing
            )
            assert appended == seq  # in the same transaction: nobody appended in between
            db.execute(
                "UPDATE submissions SET state = ?, decided_at = ?, reason = ?, decision_seq = ?,"
                " decision = ? WHERE id = ?",
                (decision, stamp, reason, seq, envelope, row["id"]),
            )
            log.info("submission %s (%s) %s: %s", row["id"], row["kind"], decision, reason)
            return _submission(
                db.execute("SELECT * FROM submissions WHERE id = ?", (row["id"],)).fetchone()
            )

    def unsent_decisions(self) -> list[tuple[str, bytes]]:
        rows = self._db.execute(
            "SELECT id, decision FROM submissions WHERE decision IS NOT NULL"
            " AND decision_sent_at IS NULL ORDER BY decision_seq"
        ).fetchall()
        return [(row["id"], bytes(row["decision"])) for row in rows]

    def mark_decision_sent(self, submission_id: str, *, now: datetime) -> None:
        with transaction(self._db) as db:
            db.execute(
                "UPDATE submissions SET decision_sent_at = ? WHERE id = ?",
                (now_text(now), submission_id),
            )

    # -- reading -------------------------------------------------------------------------------

    def submissions(self, *, state: str | None = None) -> list[Submission]:
        if state is not None and state not in STATES:
            raise SubmissionError(f"--state must be one of {', '.join(STATES)}")
        where, args = ("WHERE state = ?", (state,)) if state else ("", ())
        rows = self._db.execute(
            f"SELECT * FROM submissions {where} ORDER BY audit_seq", args
        ).fetchall()
        return [_submission(row) for row in rows]

    def get(self, selector: str) -> Submission:
        return _submission(_find(self._db, selector))

    def audit_entries(self) -> Iterator[dict[str, Any]]:
        return audit.raw_entries(self._db)

    def audit_head(self) -> audit.Head | None:
        return audit.head(self._db)

    def export(self) -> Iterator[dict[str, Any]]:
        return audit.export_lines(self._db)

    def verify(self, verify_key: bytes) -> audit.Verdict:
        signed = self.audit_head()
        return audit.verify(
            self.audit_entries(), None if signed is None else signed.to_dict(), verify_key
        )


def receipt_record(
    record: dict[str, Any],
    sender: str,
    digest: str,
    *,
    now: datetime,
    audit_seq: int | None,
    reason: str,
    detail: str = "",
) -> dict[str, Any]:
    """The receipt of ``record``: ``received`` (with its audit entry) or refused for ``reason``."""
    received = reason == "received"
    return {
        "schema": 1,
        "kind": "receipt",
        "nonce": new_nonce(),
        "issued_at": now_text(now),
        "agent_key": sender,
        "submission": record["nonce"],
        "submission_kind": record["kind"],
        "digest": digest,
        "outcome": "received" if received else "refused",
        "reason": reason,
        "detail": (detail or f"stored as audit entry {audit_seq}")[:1024],
        "audit_seq": audit_seq if received else None,
    }


def _find(db: sqlite3.Connection, selector: str) -> sqlite3.Row:
    """A submission by its id, or by a unique prefix of at least 8 characters."""
    selector = selector.strip().lower()
    row = db.execute("SELECT * FROM submissions WHERE id = ?", (selector,)).fetchone()
    if row is not None:
        return row
    if len(selector) >= 8 and all(c in "0123456789abcdef" for c in selector):
        rows = db.execute(
            "SELECT * FROM submissions WHERE id >= ? AND id < ? LIMIT 2",
            (selector, selector + "g"),
        ).fetchall()
        if len(rows) == 1:
            return rows[0]
        if len(rows) > 1:
            raise SubmissionError(f"{selector!r} names more than one submission; give more of it")
    raise SubmissionError(f"no submission {selector!r}")


def _submission(row: sqlite3.Row) -> Submission:
    signed = loads(row["signed_record"], "stored submission")
    return Submission(
        id=row["id"],
        kind=row["kind"],
        state=row["state"],
        title=row["title"],
        sender=row["sender"],
        host_id=row["host_id"],
        hostname=row["hostname"],
        tokens=tuple(row["tokens"].split()),
        issued_at=row["issued_at"],
        received_at=row["received_at"],
        digest=row["digest"],
        audit_seq=row["audit_seq"],
        decided_at=row["decided_at"],
        reason=row["reason"],
        decision_seq=row["decision_seq"],
        record=signed["record"],
    )
