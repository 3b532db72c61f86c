"""Admission: a verified enrolment applied to the registry, host_ids given out, and the
assignments sent kept for resends.

Every batch of enrolments is one BEGIN IMMEDIATE transaction, so concurrent ingesters serialise
and a crash leaves either all of an enrolment (its assignment included) or none of it.
"""

from __future__ import annotations

import hmac
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import msgspec

from cooee_agent.identity import token as codec
from cooee_agent.leader.database import transaction
from cooee_agent.leader.errors import HostIdExhausted
from cooee_agent.leader.registry import join_tokens, pending
from cooee_agent.protocol.records import EnrolmentRecord, SlotToken, now_text, slot_tokens
from cooee_agent.protocol.schema import canonical

log = logging.getLogger(__name__)

HOST_ID_COUNT = codec.MAX_HOST_ID + 1
# Assignments kept per host for resends: an agent's outbox may still hold an enrolment or two that
# a later one superseded, and each is retired only by the assignment that answers it.
ASSIGNMENTS_KEPT = 4

Sealer = Callable[[EnrolmentRecord, int, tuple[SlotToken, ...]], bytes]


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on first contact, so a flood of forged enrolments can neither fill the registry
    with pending hosts nor take every host_id in a minute."""

    # Hosts held for an operator at once; past it a new tokenless host is refused
    # (``pending-full``) without a row. A host with a valid join token is admitted regardless.
    max_pending: int = 256
    # New hosts admitted on first contact (no operator) in any 60 s; past it, ``rate-limited``.
    admissions_per_minute: int = 60


# What the registry applies unless told otherwise: an operator ingesting by hand, or a program
# using the registry directly, admits what it is given. ``leader serve`` faces the mesh and
# applies ``Limits()``.
NO_LIMITS = Limits(max_pending=2**62, admissions_per_minute=2**62)
# Refusals that leave no trace in the registry, the nonce included: the agent's outbox resends
# the same envelope, and it must be admitted once there is room.
UNRECORDED = ("rate-limited", "pending-full")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the registry decided: ``accepted`` or a registry reason, with the host's tokens."""

    # accepted | replayed | pending | not-approved | revoked | exhausted | rate-limited |
    # pending-full
    reason: str
    detail: str
    host_id: int | None = None
    tokens: tuple[SlotToken, ...] = ()
    assignment_envelope: bytes | None = None
    # Fingerprints of the keys that claimed this host besides the one admitted or held now:
    # someone else enrols under its name (an operator is called).
    competing: tuple[str, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.reason == "accepted"


@dataclass(frozen=True, slots=True)
class Enrolment:
    """A verified enrolment to apply. ``admitted``: a new host may join without an operator (no
    join tokens required, or a token from the Leader's file); otherwise it needs a live token
    of the registry's, spent here, or it is held for ``leader approve``."""

    record: EnrolmentRecord
    nonce_expires_at: int
    admitted: bool = True
    # The record as the registry keeps it (canonical, without its join token), when the caller
    # has that text already; made from the record otherwise.
    document: str | None = None


def enrol_batch(
    db: sqlite3.Connection,
    enrolments: Sequence[Enrolment],
    *,
    now: datetime,
    seal: Sealer | None = None,
    limits: Limits = NO_LIMITS,
) -> list[Outcome]:
    """Apply verified enrolments in one transaction (group commit), each in its own savepoint:
    one that is refused leaves the others, and all become durable together, before any answer
    can be sent.

    A nonce is checked and recorded with its registry change, so a crash never leaves a
    recorded nonce without its change or the other way round. When accepted,
    ``seal(record, host_id, tokens)`` makes the assignment envelope, which is stored in the same
    transaction (``stored_assignment`` finds it for a resent enrolment).
    """
    outcomes = []
    with transaction(db):
        batch = _Batch(now, now_text(now), seal, limits)
        db.execute("DELETE FROM nonces WHERE expires_at < ?", (int(now.timestamp()),))
        for enrolment in enrolments:
            db.execute("SAVEPOINT enrolment")
            try:
                outcome = _enrol_one(db, enrolment, batch)
            except HostIdExhausted as error:
                db.execute("ROLLBACK TO enrolment")
                batch.rolled_back()
                outcome = Outcome("exhausted", str(error))
            if outcome.reason in UNRECORDED:
                db.execute("ROLLBACK TO enrolment")
                batch.rolled_back()
            db.execute("RELEASE enrolment")
            outcomes.append(outcome)
    return outcomes


@dataclass(slots=True)
class _Batch:
    """One enrolment batch's transaction: its moment, its answers, its bounds, and where the
    search for a free host_id starts."""

    now: datetime
    stamp: str
    seal: Sealer | None
    limits: Limits
    # Every host_id below it is taken: no other writer runs inside the transaction, and each id
    # given out is the lowest free one; back to 0 when a savepoint is rolled back.
    free_from: int = 0
    # The host row the enrolment being applied inserted, if it did: it has no assignments yet
    # (a deleted host's went with it, and the foreign key allows none without a host).
    new_row: int | None = None
    # Hosts admitted in the minute before ``now``, once counted: the batch's moment is fixed,
    # so only its own admissions change it. None (count again) after a savepoint rollback.
    admitted_recently: int | None = None

    def take_host_id(self, db: sqlite3.Connection) -> int:
        host_id = free_host_id(db, self.free_from)
        self.free_from = host_id + 1
        return host_id

    def admitted_in_last_minute(self, db: sqlite3.Connection) -> int:
        if self.admitted_recently is None:
            self.admitted_recently = _admitted_since(db, self.now.timestamp() - 60)
        return self.admitted_recently

    def rolled_back(self) -> None:
        self.free_from = 0  # an id given out in the savepoint is free again
        self.admitted_recently = None


def _enrol_one(db: sqlite3.Connection, enrolment: Enrolment, batch: _Batch) -> Outcome:
    record = enrolment.record
    recorded = db.execute(
        "INSERT OR IGNORE INTO nonces VALUES (?, ?)", (record.nonce, enrolment.nonce_expires_at)
    )
    if recorded.rowcount == 0:
        return Outcome("replayed", f"nonce {record.nonce} was already seen")
    batch.new_row = None
    outcome, row = _enrol_host(db, enrolment, batch)
    if outcome.accepted and batch.seal is not None:
        assert outcome.host_id is not None and row is not None
        envelope = batch.seal(record, outcome.host_id, outcome.tokens)
        store_assignment(db, row, record, envelope, batch.stamp, prune=row != batch.new_row)
        return replace(outcome, assignment_envelope=envelope)
    return outcome


def _enrol_host(
    db: sqlite3.Connection, enrolment: Enrolment, batch: _Batch
) -> tuple[Outcome, int | None]:
    """The registry's decision, and the host's row when it was accepted."""
    record = enrolment.record
    host = db.execute(
        "SELECT * FROM hosts WHERE hostname = ? AND mac = ?",
        (record.host.hostname, record.host.mac),
    ).fetchone()
    name = f"{record.host.hostname} ({record.host.mac})"
    # Kept without its join token: a secret must not sit in clear in the registry.
    document = enrolment.document or canonical(
        msgspec.structs.replace(record, join_token=None)
    ).decode("utf-8")
    if host is not None and host["status"] == "revoked":
        return Outcome("revoked", f"host {name} was revoked by an operator"), None
    if host is None or host["status"] == "pending":
        return _first_contact(db, host, enrolment, document, batch)
    if not hmac.compare_digest(host["ed25519"], record.agent_ed25519):
        claims = pending.hold(db, host["row"], record, document, batch.stamp)
        return Outcome(
            "pending",
            f"host {name} returned with a different agent key; "
            "held until an operator runs 'leader approve'",
            host["host_id"],
            competing=_others(claims, record.agent_ed25519) if len(claims) > 1 else (),
        ), None
    tokens = apply_record(db, host["row"], host["host_id"], record, document, batch.stamp)
    return Outcome("accepted", f"known host {name}", host["host_id"], tokens), host["row"]


def _first_contact(
    db: sqlite3.Connection,
    host: sqlite3.Row | None,
    enrolment: Enrolment,
    document: str,
    batch: _Batch,
) -> tuple[Outcome, int | None]:
    """A host without a host_id: admit it (join token or open Leader), or hold its key.

    A valid token admits the host whatever is pending under its name: a tokenless claimant
    that came first must not be able to squat a name the real host holds a token for.
    """
    record = enrolment.record
    now, stamp, limits = batch.now, batch.stamp, batch.limits
    name = f"{record.host.hostname} ({record.host.mac})"
    token_id = None
    if not enrolment.admitted and record.join_token is not None:
        token_id = join_tokens.find(db, record.join_token, now=now)
    if enrolment.admitted or token_id is not None:
        if batch.admitted_in_last_minute(db) >= limits.admissions_per_minute:
            # Nothing is recorded (UNRECORDED): the token stays unspent and the agent's resend
            # of this very envelope is admitted once the minute allows.
            return Outcome(
                "rate-limited",
                f"new host {name} refused: {limits.admissions_per_minute} new hosts were "
                "admitted in the last minute; it is admitted when it enrols again later",
            ), None
        if token_id is not None:
            join_tokens.spend(db, token_id)
        host_id = batch.take_host_id(db)
        if host is None:
            # The row written once, with what apply_record would write on it: a second write
            # of the 9 KB record cost 19 us a host.
            cursor = db.execute(
                "INSERT INTO hosts (hostname, mac, status, first_seen, host_id, admitted_at,"
                " ed25519, age, record, last_enrolled)"
                " VALUES (?, ?, 'active', ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.host.hostname,
                    record.host.mac,
                    stamp,
                    host_id,
                    now.timestamp(),
                    record.agent_ed25519,
                    record.agent_age,
                    document,
                    stamp,
                ),
            )
            assert cursor.lastrowid is not None
            row = batch.new_row = cursor.lastrowid
            tokens = slot_tokens(host_id, record.slots)
            others: tuple[str, ...] = ()
        else:
            row = host["row"]
            others = _others(pending.held(db, row), record.agent_ed25519)
            pending.clear(db, row)
            db.execute(
                "UPDATE hosts SET host_id = ?, admitted_at = ? WHERE row = ?",
                (host_id, now.timestamp(), row),
            )
            tokens = apply_record(db, row, host_id, record, document, stamp)
        batch.admitted_recently = batch.admitted_in_last_minute(db) + 1
        log.info("admitted new host %s as host_id %d", name, host_id)
        return Outcome("accepted", f"new host {name}", host_id, tokens, competing=others), row
    if host is None:
        held_now = db.execute("SELECT count(*) FROM hosts WHERE status = 'pending'").fetchone()[0]
        if held_now >= limits.max_pending:
            return Outcome(
                "pending-full",
                f"new host {name} has no valid join token and {held_now} hosts already wait "
                "for 'leader approve'; it is not held",
            ), None
        cursor = db.execute(
            "INSERT INTO hosts (hostname, mac, status, first_seen) VALUES (?, ?, 'pending', ?)",
            (record.host.hostname, record.host.mac, stamp),
        )
        assert cursor.lastrowid is not None
        pending.hold(db, cursor.lastrowid, record, document, stamp)
        return Outcome(
            "not-approved", f"new host {name} has no valid join token; held for 'leader approve'"
        ), None
    claims = pending.hold(db, host["row"], record, document, stamp)
    return Outcome(
        "not-approved",
        f"host {name} waits for 'leader approve'",
        competing=_others(claims, record.agent_ed25519) if len(claims) > 1 else (),
    ), None


def _others(claims: Sequence[pending.PendingKey], key: str) -> tuple[str, ...]:
    return tuple(claim.fingerprint for claim in claims if claim.ed25519 != key)


def _admitted_since(db: sqlite3.Connection, since: float) -> int:
    row = db.execute("SELECT count(*) FROM hosts WHERE admitted_at > ?", (since,)).fetchone()
    return int(row[0])


def free_host_id(db: sqlite3.Connection, start: int = 0) -> int:
    """The lowest host_id never given to any host row, where every id below ``start`` is known
    to be taken. Revoked hosts keep theirs, so an id is never reused and an old token can never
    name a different host."""
    # A batch counting on from its last id usually finds ``start`` free: one probe of the
    # UNIQUE index on host_id (2 us; the query below took 8).
    if start < HOST_ID_COUNT and (
        db.execute("SELECT 1 FROM hosts WHERE host_id = ?", (start,)).fetchone() is None
    ):
        return start
    # ``start`` itself, or the lowest id above a taken one from ``start`` on: a gap is found by
    # the UNIQUE index on host_id, not by reading every row.
    row = db.execute(
        "SELECT free FROM (SELECT ? AS free WHERE NOT EXISTS"
        " (SELECT 1 FROM hosts WHERE host_id = ?)"
        " UNION ALL SELECT MIN(host_id + 1) FROM hosts AS taken WHERE host_id >= ?"
        " AND NOT EXISTS (SELECT 1 FROM hosts WHERE host_id = taken.host_id + 1))"
        " WHERE free IS NOT NULL ORDER BY free LIMIT 1",
        (start, start, start),
    ).fetchone()
    if row is not None and row[0] < HOST_ID_COUNT:
        return int(row[0])
    raise HostIdExhausted(
        f"host_id space exhausted: all {HOST_ID_COUNT} host ids (0..{HOST_ID_COUNT - 1}) "
        "are taken; revoked hosts keep theirs"
    )


def apply_record(
    db: sqlite3.Connection,
    row: int,
    host_id: int,
    record: EnrolmentRecord,
    document: str,
    stamp: str,
    *,
    clear_pending: bool = False,
) -> tuple[SlotToken, ...]:
    """Pin the record's keys and make it the host's record: its slots and agents are read from
    it (``views``), and its tokens are its host_id and slot numbers.

    A pending key change stays until an operator decides: the old key enrolling again must
    not wipe the evidence that someone else claimed this host.
    """
    db.execute(
        "UPDATE hosts SET ed25519 = ?, age = ?, record = ?, last_enrolled = ?, status ="
        " 'active' WHERE row = ?",
        (record.agent_ed25519, record.agent_age, document, stamp, row),
    )
    if clear_pending:
        db.execute(
            "UPDATE hosts SET pending_ed25519 = NULL, pending_age = NULL,"
            " pending_record = NULL WHERE row = ?",
            (row,),
        )
    return slot_tokens(host_id, record.slots)


def store_assignment(
    db: sqlite3.Connection,
    row: int,
    record: EnrolmentRecord,
    envelope: bytes,
    stamp: str,
    *,
    prune: bool = True,
) -> None:
    """Keep the assignment for resends, and only the host's ASSIGNMENTS_KEPT latest. ``prune``
    False: the host has no other (a row inserted by this enrolment), so nothing is deleted."""
    db.execute(
        "INSERT OR REPLACE INTO assignments VALUES (?, ?, ?, ?, ?)",
        (record.nonce, row, record.agent_ed25519, envelope, stamp),
    )
    if not prune:
        return
    db.execute(
        "DELETE FROM assignments WHERE host_row = ? AND enrolment_nonce NOT IN (SELECT"
        " enrolment_nonce FROM assignments WHERE host_row = ? ORDER BY rowid DESC LIMIT ?)",
        (row, row, ASSIGNMENTS_KEPT),
    )


def stored_assignment(db: sqlite3.Connection, enrolment_nonce: str, agent_key: str) -> bytes | None:
    """The assignment sent for this enrolment, if it is one of its host's latest and the host
    is still active with the same pinned key (a revoked or re-keyed host gets nothing)."""
    row = db.execute(
        "SELECT a.envelope, a.agent_key, h.ed25519, h.status FROM assignments a"
        " JOIN hosts h ON h.row = a.host_row WHERE a.enrolment_nonce = ?",
        (enrolment_nonce,),
    ).fetchone()
    if row is None or row["status"] != "active" or row["ed25519"] is None:
        return None
    if not (
        hmac.compare_digest(row["agent_key"], agent_key)
        and hmac.compare_digest(row["ed25519"], agent_key)
    ):
        return None
    return bytes(row["envelope"])
