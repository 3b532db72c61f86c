"""What the registry shows of a host: its slots, agents and presence, and finding a host by name."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

import msgspec
import msgspec.json

from cooee_agent.files import shown
from cooee_agent.identity.canonical import normalise_mac
from cooee_agent.leader.errors import RegistryError
from cooee_agent.leader.registry.pending import key_fingerprint
from cooee_agent.protocol.records import EnrolmentRecord, SlotToken, slot_tokens
from cooee_agent.protocol.schema import loads

# How the announced slot states sum up to one word for the host, worst first.
SLOT_STATE_ORDER = ("degraded", "draining", "busy", "available")


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
    # Every key waiting for an operator's decision on this host: (fingerprint, last seen).
    pending_keys: tuple[tuple[str, str], ...] = ()

    @property
    def key_fingerprint(self) -> str | None:
        """The pinned key's fingerprint (what 'leader approve' printed when it pinned it)."""
        return None if self.ed25519 is None else key_fingerprint(self.ed25519)

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
            "key_fingerprint": self.key_fingerprint,
            "pending_keys": [
                {"fingerprint": fingerprint, "seen_at": seen}
                for fingerprint, seen in self.pending_keys
            ],
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


def hosts(db: sqlite3.Connection) -> list[HostView]:
    rows = db.execute(
        "SELECT row FROM hosts ORDER BY host_id IS NULL, host_id, hostname"
    ).fetchall()
    return [view(db, r["row"]) for r in rows]


def host_by_id(db: sqlite3.Connection, host_id: int) -> HostView | None:
    row = db.execute("SELECT row FROM hosts WHERE host_id = ?", (host_id,)).fetchone()
    return None if row is None else view(db, row["row"])


def view(db: sqlite3.Connection, row: int) -> HostView:
    host = db.execute("SELECT * FROM hosts WHERE row = ?", (row,)).fetchone()
    parts = _parts(host)
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
        slots=_slots(host["host_id"], parts),
        agents=_agents(host, parts),
        presence=presence,
        pending_keys=tuple(
            (key_fingerprint(r["ed25519"]), r["seen_at"])
            for r in db.execute(
                "SELECT ed25519, seen_at FROM pending_keys WHERE host_row = ?"
                " ORDER BY seen_at, rowid",
                (row,),
            )
        ),
    )


class _TupleShown(msgspec.Struct, frozen=True):
    model: str
    gpu_id: str


class _AgentShown(msgspec.Struct, frozen=True):
    slot: int
    key: str
    tuple: _TupleShown


class _SlotShown(msgspec.Struct, frozen=True):
    slot: int
    gpu_id: str
    vendor: str
    name: str


class _RecordParts(msgspec.Struct, frozen=True):
    """The slots and agents of a stored record, every other field skipped unread."""

    slots: tuple[_SlotShown, ...] = ()
    agents: tuple[_AgentShown, ...] = ()


_READ_PARTS = msgspec.json.Decoder(_RecordParts)


def _parts(host: sqlite3.Row) -> _RecordParts:
    """What the host's accepted record says of its slots and agents (checked in full when it was
    accepted); a host with none, held for approval, has none."""
    if host["record"] is None or host["host_id"] is None:
        return _RecordParts()
    return _READ_PARTS.decode(host["record"])


def host_tokens(host_id: int | None, record: str | None) -> tuple[str, ...]:
    """A host's slot tokens in slot order, from its host_id and stored record (none without)."""
    if host_id is None or record is None:
        return ()
    slots = sorted(_READ_PARTS.decode(record).slots, key=lambda s: s.slot)
    return tuple(t.token for t in slot_tokens(host_id, slots))


def _slots(host_id: int | None, parts: _RecordParts) -> tuple[dict[str, Any], ...]:
    if host_id is None:
        return ()
    ordered = sorted(parts.slots, key=lambda s: s.slot)
    return tuple(
        {"slot": s.slot, "gpu_id": s.gpu_id, "vendor": s.vendor, "name": s.name, "token": t.token}
        for s, t in zip(ordered, slot_tokens(host_id, ordered), strict=True)
    )


def _agents(host: sqlite3.Row, parts: _RecordParts) -> tuple[dict[str, Any], ...]:
    return tuple(
        {
            "slot": a.slot,
            "key": a.key,
            "model": a.tuple.model,
            "gpu_id": a.tuple.gpu_id,
            "hostname": host["hostname"],
            "mac": host["mac"],
        }
        for a in sorted(parts.agents, key=lambda a: (a.slot, a.tuple.model, a.key))
    )


def find(db: sqlite3.Connection, selector: str) -> sqlite3.Row:
    """A host by host_id, ``hostname``, ``hostname/mac`` or mac; exactly one must match."""
    text = selector.strip().lower()
    # ASCII digits only ('²'.isdigit() is true, int('²') raises); a number past any host_id
    # matches none rather than overflowing SQLite's integer.
    if text.isascii() and text.isdigit():
        number = int(text) if len(text) <= 18 else -1
        rows = db.execute("SELECT * FROM hosts WHERE host_id = ?", (number,)).fetchall()
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
        raise RegistryError(f"no host matches {shown(selector)}")
    if len(rows) > 1:
        names = ", ".join(f"{r['hostname']}/{r['mac']}" for r in rows)
        raise RegistryError(f"{shown(selector)} matches several hosts ({names}); name hostname/mac")
    return rows[0]


def _mac_or_raw(text: str) -> str:
    try:
        return normalise_mac(text)
    except ValueError:
        return text


@dataclass(frozen=True, slots=True)
class ActiveEnrolment:
    """An active host's accepted enrolment and tokens: what its assignment is sealed from."""

    host_id: int
    record: EnrolmentRecord
    tokens: tuple[SlotToken, ...]


_ACTIVE = (
    "SELECT row, host_id, record FROM hosts"
    " WHERE status = 'active' AND host_id IS NOT NULL AND record IS NOT NULL"
)


def active_enrolments(db: sqlite3.Connection) -> list[ActiveEnrolment]:
    rows = db.execute(_ACTIVE + " ORDER BY host_id").fetchall()
    return [_active_enrolment(db, row) for row in rows]


def active_enrolment(db: sqlite3.Connection, host_id: int) -> ActiveEnrolment | None:
    row = db.execute(_ACTIVE + " AND host_id = ?", (host_id,)).fetchone()
    return None if row is None else _active_enrolment(db, row)


def _active_enrolment(db: sqlite3.Connection, row: sqlite3.Row) -> ActiveEnrolment:
    record = EnrolmentRecord.from_dict(loads(row["record"], "stored record"))
    slots = sorted(record.slots, key=lambda s: s.slot)
    return ActiveEnrolment(row["host_id"], record, slot_tokens(row["host_id"], slots))
