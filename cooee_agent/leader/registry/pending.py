"""Keys held for an operator: every agent key that claimed a pending host, or a known host with
a key other than its pinned one, kept (a bounded few per host) until one is admitted.

A host name and MAC are no secret: anyone on the mesh can claim them with a key of their own.
Keeping each claimant's key, not only the latest, lets an operator see that two keys compete for
one host and choose which to pin (``leader approve --key FINGERPRINT``).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from cooee_agent.leader.errors import RegistryError
from cooee_agent.protocol.keys import key_fingerprint
from cooee_agent.protocol.records import EnrolmentRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS pending_keys (
    host_row INTEGER NOT NULL REFERENCES hosts (row),
    ed25519 TEXT NOT NULL,
    age TEXT NOT NULL,
    record TEXT NOT NULL,
    seen_at TEXT NOT NULL,
    PRIMARY KEY (host_row, ed25519)
)
"""
# Claimants kept per host: past it the one heard least recently is dropped.
PENDING_KEYS_PER_HOST = 8


__all__ = ["PENDING_KEYS_PER_HOST", "PendingKey", "key_fingerprint"]


@dataclass(frozen=True, slots=True)
class PendingKey:
    ed25519: str
    seen_at: str

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.ed25519)


def hold(
    db: sqlite3.Connection, host_row: int, record: EnrolmentRecord, document: str, stamp: str
) -> list[PendingKey]:
    """Keep this claimant's key and record for the host (the newest also in the host's row);
    returns every key now held for it, oldest first."""
    db.execute(
        "INSERT INTO pending_keys VALUES (?, ?, ?, ?, ?) ON CONFLICT (host_row, ed25519)"
        " DO UPDATE SET age = excluded.age, record = excluded.record, seen_at = excluded.seen_at",
        (host_row, record.agent_ed25519, record.agent_age, document, stamp),
    )
    db.execute(
        "DELETE FROM pending_keys WHERE host_row = ? AND rowid NOT IN (SELECT rowid FROM"
        " pending_keys WHERE host_row = ? ORDER BY seen_at DESC, rowid DESC LIMIT ?)",
        (host_row, host_row, PENDING_KEYS_PER_HOST),
    )
    db.execute(
        "UPDATE hosts SET pending_ed25519 = ?, pending_age = ?, pending_record = ? WHERE row = ?",
        (record.agent_ed25519, record.agent_age, document, host_row),
    )
    return held(db, host_row)


def held(db: sqlite3.Connection, host_row: int) -> list[PendingKey]:
    rows = db.execute(
        "SELECT ed25519, seen_at FROM pending_keys WHERE host_row = ? ORDER BY seen_at, rowid",
        (host_row,),
    ).fetchall()
    return [PendingKey(row["ed25519"], row["seen_at"]) for row in rows]


def choose(db: sqlite3.Connection, host: sqlite3.Row, key: str | None) -> sqlite3.Row:
    """The pending claim to pin: the one whose fingerprint is ``key``, or the only one."""
    rows = db.execute(
        "SELECT ed25519, age, record, seen_at FROM pending_keys WHERE host_row = ?"
        " ORDER BY seen_at, rowid",
        (host["row"],),
    ).fetchall()
    name = f"{host['hostname']}/{host['mac']}"
    if key is not None:
        wanted = key.strip().upper()
        for row in rows:
            if key_fingerprint(row["ed25519"]) == wanted:
                return row
        raise RegistryError(f"no key with fingerprint {key} is pending for {name}")
    if len(rows) == 1:
        return rows[0]
    if not rows:
        raise RegistryError(f"host {name} has nothing pending to approve")
    claims = ", ".join(f"{key_fingerprint(r['ed25519'])} (seen {r['seen_at']})" for r in rows)
    raise RegistryError(
        f"{len(rows)} keys claim {name}: {claims}; choose one with --key FINGERPRINT"
    )


def clear(db: sqlite3.Connection, host_row: int) -> None:
    db.execute("DELETE FROM pending_keys WHERE host_row = ?", (host_row,))
    db.execute(
        "UPDATE hosts SET pending_ed25519 = NULL, pending_age = NULL, pending_record = NULL"
        " WHERE row = ?",
        (host_row,),
    )


def backfill(db: sqlite3.Connection) -> None:
    """A registry from before this table held one pending key in the host's row: keep it."""
    db.execute(
        "INSERT OR IGNORE INTO pending_keys SELECT row, pending_ed25519, pending_age,"
        " pending_record, coalesce(last_enrolled, first_seen) FROM hosts"
        " WHERE pending_ed25519 IS NOT NULL"
    )
