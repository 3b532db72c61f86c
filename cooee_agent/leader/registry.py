"""The Leader's registry: hosts, their pinned keys, slots and agents, host_id assignment, the
replay cache, the assignments sent (for resends) and each host's presence, in one SQLite file
(WAL). Every change is one BEGIN IMMEDIATE transaction, so concurrent ingesters serialise and a
crash leaves either all of an enrolment (its assignment included) or none of it.
"""

from __future__ import annotations

import hmac
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cooee_agent.identity import token as codec
from cooee_agent.identity.canonical import normalise_mac
from cooee_agent.leader.database import add_missing_columns, open_database, transaction
from cooee_agent.leader.errors import HostIdExhausted, RegistryError
from cooee_agent.protocol.records import (
    TOKEN_VERSION,
    EnrolmentRecord,
    SlotToken,
    now_text,
)
from cooee_agent.protocol.schema import canonical, loads

log = logging.getLogger(__name__)

REGISTRY_FILE = "registry.sqlite3"
HOST_ID_COUNT = codec.MAX_HOST_ID + 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS hosts (
    row INTEGER PRIMARY KEY,
    host_id INTEGER UNIQUE CHECK (host_id BETWEEN 0 AND 1023),
    hostname TEXT NOT NULL,
    mac TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'pending', 'revoked')),
    ed25519 TEXT,
    age TEXT,
    record TEXT,
    pending_ed25519 TEXT,
    pending_age TEXT,
    pending_record TEXT,
    first_seen TEXT NOT NULL,
    last_enrolled TEXT,
    UNIQUE (hostname, mac)
);
CREATE TABLE IF NOT EXISTS slots (
    host_row INTEGER NOT NULL REFERENCES hosts (row),
    slot INTEGER NOT NULL,
    gpu_id TEXT NOT NULL,
    vendor TEXT NOT NULL,
    name TEXT NOT NULL,
    token TEXT NOT NULL UNIQUE,
    PRIMARY KEY (host_row, slot)
);
CREATE TABLE IF NOT EXISTS agents (
    host_row INTEGER NOT NULL REFERENCES hosts (row),
    key TEXT NOT NULL,
    slot INTEGER NOT NULL,
    model TEXT NOT NULL,
    gpu_id TEXT NOT NULL,
    PRIMARY KEY (host_row, key)
);
CREATE TABLE IF NOT EXISTS nonces (
    nonce TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS nonces_expiry ON nonces (expires_at);
CREATE TABLE IF NOT EXISTS assignments (
    enrolment_nonce TEXT PRIMARY KEY,
    host_row INTEGER NOT NULL REFERENCES hosts (row),
    agent_key TEXT NOT NULL,
    envelope BLOB NOT NULL,
    stored_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS assignments_host ON assignments (host_row);
CREATE TABLE IF NOT EXISTS presence (
    host_row INTEGER PRIMARY KEY REFERENCES hosts (row),
    state TEXT NOT NULL CHECK (state IN ('online', 'offline', 'left')),
    last_seen TEXT NOT NULL,
    deadline REAL NOT NULL,
    issued_at TEXT NOT NULL,
    seq INTEGER NOT NULL,
    interval_s INTEGER,
    reason TEXT,
    slots TEXT NOT NULL,
    heard INTEGER NOT NULL DEFAULT 0,
    missed INTEGER NOT NULL DEFAULT 0
);
"""
# Columns added after the first release: (table, column, definition) for older files.
ADDED_COLUMNS = (
    ("presence", "heard", "INTEGER NOT NULL DEFAULT 0"),
    ("presence", "missed", "INTEGER NOT NULL DEFAULT 0"),
)

# Assignments kept per host for resends: an agent's outbox may still hold an enrolment or two that
# a later one superseded, and each is retired only by the assignment that answers it.
ASSIGNMENTS_KEPT = 4
# How the announced slot states sum up to one word for the host, worst first.
SLOT_STATE_ORDER = ("degraded", "draining", "busy", "available")

Sealer = Callable[[EnrolmentRecord, int, tuple[SlotToken, ...]], bytes]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the registry decided: ``accepted`` or a registry reason, with the host's tokens."""

    reason: str  # accepted | replayed | pending | not-approved | revoked | exhausted
    detail: str
    host_id: int | None = None
    tokens: tuple[SlotToken, ...] = ()
    assignment_envelope: bytes | None = None

    @property
    def accepted(self) -> bool:
        return self.reason == "accepted"


@dataclass(frozen=True, slots=True)
class PinnedHost:
    """An active host found by its pinned agent key."""

    row: int
    host_id: int
    hostname: str
    mac: str


@dataclass(frozen=True, slots=True)
class Presence:
    """What the Leader last heard from a host: ``state`` is online, offline or left."""

    state: str
    last_seen: str
    issued_at: str
    seq: int
    interval_s: int | None
    reason: str | None
    slots: tuple[dict[str, Any], ...]
    heard: int = 0  # availability and leaving records applied
    missed: int = 0  # sequence numbers skipped between them: records that never arrived

    @property
    def agent_state(self) -> str | None:
        """The worst announced slot state (degraded > draining > busy > available)."""
        states = {str(s.get("state")) for s in self.slots}
        return next((state for state in SLOT_STATE_ORDER if state in states), None)


@dataclass(frozen=True, slots=True)
class HostView:
    host_id: int | None
    hostname: str
    mac: str
    status: str  # active | pending | revoked
    key_change_pending: bool
    ed25519: str | None
    first_seen: str
    last_enrolled: str | None
    slots: tuple[dict[str, Any], ...]
    agents: tuple[dict[str, Any], ...]
    presence: Presence | None = None

    @property
    def state(self) -> str:
        """online, offline, left, or unknown (no availability heard yet)."""
        return "unknown" if self.presence is None else self.presence.state

    def to_dict(self) -> dict[str, Any]:
        presence = self.presence
        announced = {} if presence is None else {s["slot"]: s for s in presence.slots}
        return {
            "host_id": self.host_id,
            "hostname": self.hostname,
            "mac": self.mac,
            "status": self.status,
            "key_change_pending": self.key_change_pending,
            "ed25519": self.ed25519,
            "first_seen": self.first_seen,
            "last_enrolled": self.last_enrolled,
            "slots": [
                {**slot, "availability": _slot_metrics(announced.get(slot["slot"]))}
                for slot in self.slots
            ],
            "agents": list(self.agents),
            "state": self.state,
            "online": self.state == "online",
            "last_seen": None if presence is None else presence.last_seen,
            "agent_state": None if presence is None else presence.agent_state,
            "seq": None if presence is None else presence.seq,
            "interval_s": None if presence is None else presence.interval_s,
            "left_reason": presence.reason if presence and presence.state == "left" else None,
            "heartbeats_heard": 0 if presence is None else presence.heard,
            "heartbeats_missed": 0 if presence is None else presence.missed,
        }


def _slot_metrics(announced: dict[str, Any] | None) -> dict[str, Any] | None:
    if announced is None:
        return None
    return {k: v for k, v in announced.items() if k not in ("slot", "token")}


class Registry:
    """One connection to the registry file; use one per thread or process."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = path
        self._db = open_database(path, SCHEMA, busy_timeout_s=busy_timeout_s)
        add_missing_columns(self._db, ADDED_COLUMNS)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- enrolment -----------------------------------------------------------------------------

    def enrol(
        self,
        record: EnrolmentRecord,
        *,
        now: datetime,
        nonce_expires_at: int,
        admitted: bool = True,
        seal: Sealer | None = None,
    ) -> Outcome:
        """Apply a verified enrolment; ``admitted`` is False when a new host lacks a join token.

        The nonce is checked and recorded in the same transaction as the host change, so a crash
        never leaves a recorded nonce without its registry change or the other way round. When
        accepted, ``seal(record, host_id, tokens)`` makes the assignment envelope, which is stored
        in that transaction too (``stored_assignment`` finds it for a resent enrolment).
        """
        stamp = now_text(now)
        try:
            with transaction(self._db) as db:
                db.execute("DELETE FROM nonces WHERE expires_at < ?", (int(now.timestamp()),))
                if db.execute("SELECT 1 FROM nonces WHERE nonce = ?", (record.nonce,)).fetchone():
                    return Outcome("replayed", f"nonce {record.nonce} was already seen")
                db.execute("INSERT INTO nonces VALUES (?, ?)", (record.nonce, nonce_expires_at))
                outcome = self._enrol_host(db, record, stamp, admitted)
                if outcome.accepted and seal is not None:
                    assert outcome.host_id is not None
                    envelope = seal(record, outcome.host_id, outcome.tokens)
                    self._store_assignment(db, record, envelope, stamp)
                    return Outcome(
                        outcome.reason, outcome.detail, outcome.host_id, outcome.tokens, envelope
                    )
                return outcome
        except HostIdExhausted as error:
            return Outcome("exhausted", str(error))

    def _enrol_host(
        self, db: sqlite3.Connection, record: EnrolmentRecord, stamp: str, admitted: bool
    ) -> Outcome:
        host = db.execute(
            "SELECT * FROM hosts WHERE hostname = ? AND mac = ?",
            (record.host.hostname, record.host.mac),
        ).fetchone()
        name = f"{record.host.hostname} ({record.host.mac})"
        document = canonical(record.to_dict()).decode("utf-8")
        if host is None:
            if not admitted:
                db.execute(
                    "INSERT INTO hosts (hostname, mac, status, pending_ed25519, pending_age,"
                    " pending_record, first_seen) VALUES (?, ?, 'pending', ?, ?, ?, ?)",
                    (
                        record.host.hostname,
                        record.host.mac,
                        record.agent_ed25519,
                        record.agent_age,
                        document,
                        stamp,
                    ),
                )
                return Outcome(
                    "not-approved",
                    f"new host {name} has no valid join token; held for 'leader approve'",
                )
            host_id = self._free_host_id(db)
            cursor = db.execute(
                "INSERT INTO hosts (host_id, hostname, mac, status, first_seen)"
                " VALUES (?, ?, ?, 'active', ?)",
                (host_id, record.host.hostname, record.host.mac, stamp),
            )
            row = cursor.lastrowid
            assert row is not None
            tokens = self._apply(db, row, host_id, record, document, stamp)
            log.info("admitted new host %s as host_id %d", name, host_id)
            return Outcome("accepted", f"new host {name}", host_id, tokens)
        if host["status"] == "revoked":
            return Outcome("revoked", f"host {name} was revoked by an operator")
        if host["status"] == "pending":
            db.execute(
                "UPDATE hosts SET pending_ed25519 = ?, pending_age = ?, pending_record = ?"
                " WHERE row = ?",
                (record.agent_ed25519, record.agent_age, document, host["row"]),
            )
            return Outcome("not-approved", f"host {name} waits for 'leader approve'")
        if not hmac.compare_digest(host["ed25519"], record.agent_ed25519):
            db.execute(
                "UPDATE hosts SET pending_ed25519 = ?, pending_age = ?, pending_record = ?"
                " WHERE row = ?",
                (record.agent_ed25519, record.agent_age, document, host["row"]),
            )
            return Outcome(
                "pending",
                f"host {name} returned with a different agent key; "
                "held until an operator runs 'leader approve'",
                host["host_id"],
            )
        tokens = self._apply(db, host["row"], host["host_id"], record, document, stamp)
        return Outcome("accepted", f"known host {name}", host["host_id"], tokens)

    def _free_host_id(self, db: sqlite3.Connection) -> int:
        # Lowest id never given to any host row; revoked hosts keep theirs, so an id is never
        # reused and an old token can never name a different host.
        used = {row[0] for row in db.execute("SELECT host_id FROM hosts WHERE host_id IS NOT NULL")}
        for candidate in range(HOST_ID_COUNT):
            if candidate not in used:
                return candidate
        raise HostIdExhausted(
            f"host_id space exhausted: all {HOST_ID_COUNT} host ids (0..{HOST_ID_COUNT - 1}) "
            "are taken; revoked hosts keep theirs"
        )

    def _apply(
        self,
        db: sqlite3.Connection,
        row: int,
        host_id: int,
        record: EnrolmentRecord,
        document: str,
        stamp: str,
        *,
        clear_pending: bool = False,
    ) -> tuple[SlotToken, ...]:
        """Pin the record's keys and replace the host's slots and agents by the record's.

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
        db.execute("DELETE FROM slots WHERE host_row = ?", (row,))
        db.execute("DELETE FROM agents WHERE host_row = ?", (row,))
        tokens = []
        for slot in record.slots:
            token = codec.encode(TOKEN_VERSION, host_id, slot.slot)
            db.execute(
                "INSERT INTO slots VALUES (?, ?, ?, ?, ?, ?)",
                (row, slot.slot, slot.gpu_id, slot.vendor, slot.name, token),
            )
            tokens.append(SlotToken(slot=slot.slot, gpu_id=slot.gpu_id, token=token))
        db.executemany(
            "INSERT INTO agents VALUES (?, ?, ?, ?, ?)",
            [(row, a.key, a.slot, a.tuple.model, a.tuple.gpu_id) for a in record.agents],
        )
        return tuple(tokens)

    def _store_assignment(
        self, db: sqlite3.Connection, record: EnrolmentRecord, envelope: bytes, stamp: str
    ) -> None:
        row = db.execute(
            "SELECT row FROM hosts WHERE hostname = ? AND mac = ?",
            (record.host.hostname, record.host.mac),
        ).fetchone()["row"]
        db.execute(
            "INSERT OR REPLACE INTO assignments VALUES (?, ?, ?, ?, ?)",
            (record.nonce, row, record.agent_ed25519, envelope, stamp),
        )
        db.execute(
            "DELETE FROM assignments WHERE host_row = ? AND enrolment_nonce NOT IN (SELECT"
            " enrolment_nonce FROM assignments WHERE host_row = ? ORDER BY rowid DESC LIMIT ?)",
            (row, row, ASSIGNMENTS_KEPT),
        )

    def stored_assignment(self, enrolment_nonce: str, agent_key: str) -> bytes | None:
        """The assignment sent for this enrolment, if it is one of its host's latest and the host
        is still active with the same pinned key (a revoked or re-keyed host gets nothing)."""
        row = self._db.execute(
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

    # -- presence ------------------------------------------------------------------------------

    def pinned_host(self, ed25519: str) -> PinnedHost | None:
        """The active host whose pinned agent key this is (None for unknown or unpinned keys)."""
        row = self._db.execute(
            "SELECT row, host_id, hostname, mac FROM hosts WHERE ed25519 = ? AND status = 'active'",
            (ed25519,),
        ).fetchone()
        if row is None or row["host_id"] is None:
            return None
        return PinnedHost(row["row"], row["host_id"], row["hostname"], row["mac"])

    def known_key(self, ed25519: str) -> sqlite3.Row | None:
        """The host that pinned this key or holds it pending (for calls from unassigned agents)."""
        return self._db.execute(
            "SELECT row, host_id, hostname, mac, status FROM hosts"
            " WHERE ed25519 = ? OR pending_ed25519 = ? ORDER BY ed25519 = ? DESC LIMIT 1",
            (ed25519, ed25519, ed25519),
        ).fetchone()

    def record_presence(
        self,
        host: PinnedHost,
        record: dict[str, Any],
        *,
        now: datetime,
        deadline: float,
    ) -> str | None:
        """Apply an availability or leaving record; returns the previous state ('' for none), or
        None when it is not newer than the last one applied (a replay or reordering: dropped).

        Newer means a greater (issued_at, seq): seq orders heartbeats within a second, and a
        signed later issued_at lets an agent whose counter restarted be heard again. Each
        applied record counts as heard; each sequence number skipped since the last one (a
        record lost on the way, or taken by an agent that stopped before sending it) as missed.
        """
        leaving = record["kind"] == "leaving"
        with transaction(self._db) as db:
            last = db.execute(
                "SELECT state, issued_at, seq, heard, missed FROM presence WHERE host_row = ?",
                (host.row,),
            ).fetchone()
            if last is not None and (record["issued_at"], record["seq"]) <= (
                last["issued_at"],
                last["seq"],
            ):
                return None
            slots = "[]" if leaving else canonical(record["slots"]).decode("utf-8")
            heard, missed = (0, 0) if last is None else (last["heard"], last["missed"])
            if last is not None and record["seq"] > last["seq"] + 1:
                missed += record["seq"] - last["seq"] - 1
            db.execute(
                "INSERT INTO presence (host_row, state, last_seen, deadline, issued_at, seq,"
                " interval_s, reason, slots, heard, missed)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (host_row) DO UPDATE SET state = excluded.state,"
                " last_seen = excluded.last_seen, deadline = excluded.deadline,"
                " issued_at = excluded.issued_at, seq = excluded.seq,"
                " interval_s = coalesce(excluded.interval_s, interval_s),"
                " reason = excluded.reason,"
                " slots = CASE WHEN ? THEN slots ELSE excluded.slots END,"
                " heard = excluded.heard, missed = excluded.missed",
                (
                    host.row,
                    "left" if leaving else "online",
                    now_text(now),
                    deadline,
                    record["issued_at"],
                    record["seq"],
                    None if leaving else record["interval_s"],
                    record["reason"] if leaving else None,
                    slots,
                    heard + 1,
                    missed,
                    leaving,
                ),
            )
            return "" if last is None else str(last["state"])

    def sweep_offline(self, now: datetime) -> list[tuple[int, str]]:
        """Mark offline every online host whose deadline passed; returns their (host_id, name)."""
        with transaction(self._db) as db:
            rows = db.execute(
                "SELECT p.host_row, h.host_id, h.hostname FROM presence p JOIN hosts h"
                " ON h.row = p.host_row WHERE p.state = 'online' AND p.deadline < ?",
                (now.timestamp(),),
            ).fetchall()
            db.executemany(
                "UPDATE presence SET state = 'offline' WHERE host_row = ?",
                [(r["host_row"],) for r in rows],
            )
        return [(r["host_id"], r["hostname"]) for r in rows]

    def next_deadline(self) -> float | None:
        """The earliest deadline of an online host (seconds since the epoch), if any."""
        row = self._db.execute("SELECT min(deadline) FROM presence WHERE state = 'online'")
        value = row.fetchone()[0]
        return None if value is None else float(value)

    # -- operator actions ----------------------------------------------------------------------

    def _find(self, db: sqlite3.Connection, selector: str) -> sqlite3.Row:
        """A host by host_id, ``hostname``, ``hostname/mac`` or mac; exactly one must match."""
        text = selector.strip().lower()
        if text.isdigit():
            rows = db.execute("SELECT * FROM hosts WHERE host_id = ?", (int(text),)).fetchall()
        elif "/" in text:
            hostname, _, mac = text.partition("/")
            rows = db.execute(
                "SELECT * FROM hosts WHERE hostname = ? AND mac = ?",
                (hostname.rstrip("."), _mac_or_raw(mac)),
            ).fetchall()
        else:
            rows = db.execute(
                "SELECT * FROM hosts WHERE hostname = ? OR mac = ?",
                (text.rstrip("."), _mac_or_raw(text)),
            ).fetchall()
        if not rows:
            raise RegistryError(f"no host matches {selector!r}")
        if len(rows) > 1:
            names = ", ".join(f"{r['hostname']}/{r['mac']}" for r in rows)
            raise RegistryError(f"{selector!r} matches several hosts ({names}); name hostname/mac")
        return rows[0]

    def approve(self, selector: str, *, now: datetime, seal: Sealer | None = None) -> HostView:
        """Admit a pending new host (assigning its id) or pin a returning host's new key.

        With ``seal``, the assignment answering the held enrolment is stored, so the agent's
        outbox, still resending that enrolment, gets it without enrolling anew.
        """
        with transaction(self._db) as db:
            host = self._find(db, selector)
            if host["pending_ed25519"] is None:
                raise RegistryError(
                    f"host {host['hostname']}/{host['mac']} has nothing pending to approve"
                )
            record = EnrolmentRecord.from_dict(loads(host["pending_record"], "pending record"))
            host_id = host["host_id"]
            if host_id is None:
                host_id = self._free_host_id(db)
                db.execute("UPDATE hosts SET host_id = ? WHERE row = ?", (host_id, host["row"]))
            tokens = self._apply(
                db, host["row"], host_id, record, host["pending_record"], now_text(now)
            )
            if seal is not None:
                envelope = seal(record, host_id, tokens)
                self._store_assignment(db, record, envelope, now_text(now))
            log.warning("operator approved %s/%s", host["hostname"], host["mac"])
            return self._view(db, host["row"])

    def revoke(self, selector: str) -> HostView:
        """Refuse the host from now on; it keeps its host_id so no other host ever gets it."""
        with transaction(self._db) as db:
            host = self._find(db, selector)
            db.execute(
                "UPDATE hosts SET status = 'revoked', pending_ed25519 = NULL, pending_age = NULL,"
                " pending_record = NULL WHERE row = ?",
                (host["row"],),
            )
            log.warning("operator revoked %s/%s", host["hostname"], host["mac"])
            return self._view(db, host["row"])

    # -- queries -------------------------------------------------------------------------------

    def hosts(self) -> list[HostView]:
        rows = self._db.execute(
            "SELECT row FROM hosts ORDER BY host_id IS NULL, host_id, hostname"
        ).fetchall()
        return [self._view(self._db, r["row"]) for r in rows]

    def host(self, selector: str) -> HostView:
        return self._view(self._db, self._find(self._db, selector)["row"])

    def host_by_id(self, host_id: int) -> HostView | None:
        row = self._db.execute("SELECT row FROM hosts WHERE host_id = ?", (host_id,)).fetchone()
        return None if row is None else self._view(self._db, row["row"])

    def _view(self, db: sqlite3.Connection, row: int) -> HostView:
        host = db.execute("SELECT * FROM hosts WHERE row = ?", (row,)).fetchone()
        slots = db.execute(
            "SELECT slot, gpu_id, vendor, name, token FROM slots WHERE host_row = ? ORDER BY slot",
            (row,),
        ).fetchall()
        agents = db.execute(
            "SELECT slot, key, model, gpu_id FROM agents WHERE host_row = ? ORDER BY slot, model",
            (row,),
        ).fetchall()
        seen = db.execute("SELECT * FROM presence WHERE host_row = ?", (row,)).fetchone()
        presence = None
        if seen is not None:
            presence = Presence(
                state=seen["state"],
                last_seen=seen["last_seen"],
                issued_at=seen["issued_at"],
                seq=seen["seq"],
                interval_s=seen["interval_s"],
                reason=seen["reason"],
                slots=tuple(loads(seen["slots"].encode("utf-8"), "stored slots")),
                heard=seen["heard"],
                missed=seen["missed"],
            )
        return HostView(
            host_id=host["host_id"],
            hostname=host["hostname"],
            mac=host["mac"],
            status=host["status"],
            key_change_pending=host["status"] == "active" and host["pending_ed25519"] is not None,
            ed25519=host["ed25519"],
            first_seen=host["first_seen"],
            last_enrolled=host["last_enrolled"],
            slots=tuple(dict(s) for s in slots),
            agents=tuple(
                {
                    **dict(a),
                    "hostname": host["hostname"],
                    "mac": host["mac"],
                }
                for a in agents
            ),
            presence=presence,
        )

    def check(self) -> list[str]:
        """Consistency problems found (empty when sound): SQLite's own check plus our invariants."""
        problems = [r[0] for r in self._db.execute("PRAGMA integrity_check") if r[0] != "ok"]
        problems += [
            f"foreign key violation in {r[0]}" for r in self._db.execute("PRAGMA foreign_key_check")
        ]
        for row in self._db.execute(
            "SELECT h.host_id, s.slot, s.token FROM slots s JOIN hosts h ON h.row = s.host_row"
        ):
            if row["host_id"] is None or codec.encode(TOKEN_VERSION, row[0], row[1]) != row[2]:
                problems.append(f"slot {row[1]} of host_id {row[0]} carries token {row[2]}")
        for row in self._db.execute(
            "SELECT host_id, hostname, mac, record FROM hosts WHERE status = 'active'"
        ):
            if row["record"] is None:
                problems.append(f"active host {row['hostname']} has no accepted record")
                continue
            record = EnrolmentRecord.from_dict(loads(row["record"], "stored record"))
            view = self.host_by_id(row["host_id"])
            assert view is not None
            if {a["key"] for a in view.agents} != {a.key for a in record.agents}:
                problems.append(f"agents of host_id {row['host_id']} differ from its record")
        return problems


def _mac_or_raw(text: str) -> str:
    try:
        return normalise_mac(text)
    except ValueError:
        return text
