"""PR and DR submissions from this host: build the record, seal it to the Leader, queue it in the
durable outbox, and keep a ledger of what was sent and what the Leader answered.

A submission stays in the outbox (resent with its backoff, the same sealed body under a freshly
signed envelope once half the freshness window has passed) until the Leader's receipt arrives;
the Leader deduplicates on the submission's id and answers a resend with what it sent before, so
an agent killed between publish and receipt loses nothing and duplicates nothing.

Ledger states: ``queued`` (in the outbox), ``received`` (the Leader stored it: audit entry
known), ``refused`` (the Leader's receipt says why), ``accepted`` or ``rejected`` (the decision).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cooee_agent.bus.outbox import Outbox
from cooee_agent.errors import CooeeError, InputError
from cooee_agent.protocol.envelope import make_envelope, sign_record
from cooee_agent.protocol.errors import RejectedError
from cooee_agent.protocol.keys import AgentKeys, LeaderBundle
from cooee_agent.protocol.kinds import topic_of
from cooee_agent.protocol.records import SCHEMA_VERSION, new_nonce, now_text
from cooee_agent.protocol.sealing import open_from_leader, seal_to_leader
from cooee_agent.protocol.submissions import blob, submission_digest

log = logging.getLogger(__name__)

KEY_PREFIX = "submission:"
LEDGER_FILE = "submissions-sent.sqlite3"
STATES = ("queued", "received", "refused", "accepted", "rejected")
ANSWER_KINDS = ("receipt", "decision")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sent (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    state TEXT NOT NULL,
    digest TEXT NOT NULL,
    queued_at TEXT NOT NULL,
    envelope BLOB NOT NULL,
    received_at TEXT,
    audit_seq INTEGER,
    decided_at TEXT,
    reason TEXT,
    detail TEXT
);
"""


class SubmissionTooLarge(InputError):
    """The sealed submission would be over the envelope limit; nothing was queued."""


def pr_record(
    *,
    title: str,
    address: str,
    change: bytes,
    form: str,
    description: str = "",
    nonce: str | None = None,
    issued_at: str | None = None,
) -> dict[str, Any]:
    return {
        "schema": SCHEMA_VERSION,
        "kind": "pr",
        "nonce": nonce or new_nonce(),
        "issued_at": issued_at or now_text(),
        "title": title,
        "description": blob(description),
        "address": address,
        "change_form": form,
        "change": blob(change),
    }


def dr_record(
    *,
    title: str,
    status: str,
    context: str,
    decision: str,
    consequences: str = "",
    addresses: Sequence[str] = (),
    supersedes: str | None = None,
    nonce: str | None = None,
    issued_at: str | None = None,
) -> dict[str, Any]:
    return {
        "schema": SCHEMA_VERSION,
        "kind": "dr",
        "nonce": nonce or new_nonce(),
        "issued_at": issued_at or now_text(),
        "title": title,
        "status": status,
        "context": blob(context),
        "decision": blob(decision),
        "consequences": blob(consequences),
        "addresses": list(addresses),
        "supersedes": supersedes,
    }


@dataclass(frozen=True, slots=True)
class SentSubmission:
    id: str
    kind: str
    title: str
    state: str
    digest: str
    queued_at: str
    received_at: str | None
    audit_seq: int | None
    decided_at: str | None
    reason: str | None
    detail: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "state": self.state,
            "digest": self.digest,
            "queued_at": self.queued_at,
            "received_at": self.received_at,
            "audit_seq": self.audit_seq,
            "decided_at": self.decided_at,
            "reason": self.reason,
            "detail": self.detail,
        }


class Ledger:
    """What this host submitted and each one's state; SQLite, 0600, shared by the CLI (which
    adds) and the daemon (which records the answers)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    @classmethod
    def open_in(cls, state_dir: Path) -> Ledger:
        return cls(Path(state_dir) / LEDGER_FILE)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def add(self, record: dict[str, Any], digest: str, envelope: bytes) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO sent (id, kind, title, state, digest, queued_at, envelope)"
                " VALUES (?, ?, ?, 'queued', ?, ?, ?)",
                (record["nonce"], record["kind"], record["title"], digest, now_text(), envelope),
            )

    def get(self, submission_id: str) -> SentSubmission | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM sent WHERE id = ?", (submission_id,)).fetchone()
        return None if row is None else _sent(row)

    def items(self) -> list[SentSubmission]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM sent ORDER BY rowid").fetchall()  # as queued
        return [_sent(row) for row in rows]

    def queued_envelopes(self) -> list[tuple[str, bytes]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, envelope FROM sent WHERE state = 'queued'"
            ).fetchall()
        return [(row["id"], bytes(row["envelope"])) for row in rows]

    def record_answer(self, record: dict[str, Any]) -> SentSubmission | None:
        """Apply a receipt or decision about one of ours (matched on id and digest); returns
        the updated entry, or None when it names nothing this host sent."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM sent WHERE id = ? AND digest = ?",
                (record["submission"], record["digest"]),
            ).fetchone()
            if row is None:
                return None
            if record["kind"] == "decision":
                self._db.execute(
                    "UPDATE sent SET state = ?, decided_at = ?, reason = ? WHERE id = ?",
                    (record["decision"], record["issued_at"], record["reason"], row["id"]),
                )
            elif row["state"] in ("queued", "refused"):
                # A receipt after a decision (a resend's answers) must not undo the decision.
                received = record["outcome"] == "received"
                self._db.execute(
                    "UPDATE sent SET state = ?, received_at = ?, audit_seq = ?, reason = ?,"
                    " detail = ? WHERE id = ?",
                    (
                        "received" if received else "refused",
                        record["issued_at"],
                        record["audit_seq"],
                        None if received else record["reason"],
                        record["detail"],
                        row["id"],
                    ),
                )
            updated = self._db.execute("SELECT * FROM sent WHERE id = ?", (row["id"],)).fetchone()
        return _sent(updated)


def _sent(row: sqlite3.Row) -> SentSubmission:
    return SentSubmission(
        id=row["id"],
        kind=row["kind"],
        title=row["title"],
        state=row["state"],
        digest=row["digest"],
        queued_at=row["queued_at"],
        received_at=row["received_at"],
        audit_seq=row["audit_seq"],
        decided_at=row["decided_at"],
        reason=row["reason"],
        detail=row["detail"],
    )


def seal_submission(record: dict[str, Any], keys: AgentKeys, bundle: LeaderBundle) -> bytes:
    """The sealed envelope; SubmissionTooLarge (naming the limit) or InputError (naming the
    field) when it cannot be sent as it is."""
    try:
        return seal_to_leader(record["kind"], record, keys, bundle)
    except RejectedError as error:
        if error.detail.startswith("envelope:"):
            size = error.detail.removeprefix("envelope: ")
            raise SubmissionTooLarge(
                f"the sealed {record['kind']} would be too large: its envelope {size}"
                " (docs/PROTOCOL.md section 4); nothing was queued"
            ) from error
        raise InputError(f"the {record['kind']} is not valid: {error.detail}") from error


def queue_submission(
    outbox: Outbox, ledger: Ledger, keys: AgentKeys, bundle: LeaderBundle, record: dict[str, Any]
) -> str:
    """Seal ``record``, note it in the ledger and queue it (due now); returns its digest.

    The ledger row (with the envelope) is written first: should the outbox write not happen,
    the daemon re-queues every ``queued`` row it finds missing from the outbox at start.
    """
    envelope = seal_submission(record, keys, bundle)
    digest = submission_digest(sign_record(record, keys.signing))
    ledger.add(record, digest, envelope)
    outbox.put(KEY_PREFIX + record["nonce"], topic_of(record["kind"]), envelope)
    log.info("queued %s %s: %s", record["kind"], record["nonce"], record["title"])
    return digest


def requeue_missing(outbox: Outbox, ledger: Ledger) -> int:
    """Put back in the outbox the queued submissions it lacks (a crash between the two writes)."""
    count = 0
    for submission_id, envelope in ledger.queued_envelopes():
        if outbox.get(KEY_PREFIX + submission_id) is None:
            kind = json.loads(envelope)["kind"]
            outbox.put(KEY_PREFIX + submission_id, topic_of(kind), envelope)
            count += 1
    return count


def take_answer(
    data: bytes, keys: AgentKeys, bundles: Sequence[LeaderBundle], outbox: Outbox, ledger: Ledger
) -> SentSubmission | None:
    """Apply a receipt or decision meant for one of this host's submissions and retire it from
    the outbox; ignore (None) everything else quietly: others' answers are routine here."""
    record = None
    for bundle in bundles:
        try:
            record = open_from_leader(data, keys, bundle, ANSWER_KINDS)
            break
        except CooeeError as error:
            log.debug("ignoring an answer: %s", error)
    if record is None:
        return None
    entry = ledger.record_answer(record)
    if entry is None:
        log.debug("ignoring a %s for submission %s", record["kind"], record["submission"])
        return None
    outbox.ack(KEY_PREFIX + entry.id)
    log.info(
        "%s %s: %s%s",
        entry.kind,
        entry.id,
        entry.state,
        f" ({entry.reason})" if entry.reason else "",
    )
    return entry


def refreshed(data: bytes, keys: AgentKeys) -> bytes:
    """The same sealed submission under a newly signed envelope (fresh ``sent_at``): the record,
    its signature and so its digest are unchanged."""
    envelope = json.loads(data)
    return make_envelope(
        envelope["kind"], envelope["address"], envelope["body"], keys.signing
    ).to_bytes()
