"""Presence: which active host a signed record comes from, what the Leader last heard from
each host (online, offline, left) and when an online host is next due."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cooee_agent.leader.database import transaction
from cooee_agent.protocol.records import now_text
from cooee_agent.protocol.schema import canonical


@dataclass(frozen=True, slots=True)
class PinnedHost:
    """An active host found by its pinned agent key."""

    row: int
    host_id: int
    hostname: str
    mac: str


def pinned_host(db: sqlite3.Connection, ed25519: str) -> PinnedHost | None:
    """The active host whose pinned agent key this is (None for unknown or unpinned keys)."""
    row = db.execute(
        "SELECT row, host_id, hostname, mac FROM hosts WHERE ed25519 = ? AND status = 'active'",
        (ed25519,),
    ).fetchone()
    if row is None or row["host_id"] is None:
        return None
    return PinnedHost(row["row"], row["host_id"], row["hostname"], row["mac"])


def known_key(db: sqlite3.Connection, ed25519: str) -> sqlite3.Row | None:
    """The host that pinned this key or holds it pending (for calls from unassigned agents)."""
    return db.execute(
        "SELECT row, host_id, hostname, mac, status FROM hosts"
        " WHERE ed25519 = ? OR pending_ed25519 = ? ORDER BY ed25519 = ? DESC LIMIT 1",
        (ed25519, ed25519, ed25519),
    ).fetchone()


def record_presence(
    db: sqlite3.Connection,
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
    with transaction(db):
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


def sweep_offline(db: sqlite3.Connection, now: datetime) -> list[tuple[int, str]]:
    """Mark offline every online host whose deadline passed; returns their (host_id, name)."""
    with transaction(db):
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


def next_deadline(db: sqlite3.Connection) -> float | None:
    """The earliest deadline of an online host (seconds since the epoch), if any."""
    row = db.execute("SELECT min(deadline) FROM presence WHERE state = 'online'")
    value = row.fetchone()[0]
    return None if value is None else float(value)
