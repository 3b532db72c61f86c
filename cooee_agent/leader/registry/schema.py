"""The registry's tables: the schema, the columns later releases added, and its invariants."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cooee_agent.leader.database import add_missing_columns, open_database, transaction
from cooee_agent.leader.registry import join_tokens, pending
from cooee_agent.protocol.errors import RejectedError
from cooee_agent.protocol.records import EnrolmentRecord
from cooee_agent.protocol.schema import loads

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
    # When a host was admitted on first contact (seconds since the epoch): the admissions per
    # minute are counted from it. NULL for hosts an operator approved.
    ("hosts", "admitted_at", "REAL"),
    # When an operator revoked the host: 'leader forget' frees its id a grace period later.
    ("hosts", "revoked_at", "TEXT"),
)


def open_registry(path: Path, *, busy_timeout_s: float) -> sqlite3.Connection:
    """Open (creating) the registry file, brought up to this release's schema."""
    db = open_database(
        path,
        ";".join((SCHEMA, join_tokens.SCHEMA, pending.SCHEMA)),
        busy_timeout_s=busy_timeout_s,
    )
    add_missing_columns(db, ADDED_COLUMNS)
    # Each host row holds its record document (13 KB at 8 slots and 4 models), so a count by
    # admission time or status read every row's pages: 0.4 ms per first contact at 254 hosts.
    db.executescript(
        "CREATE INDEX IF NOT EXISTS hosts_admitted ON hosts (admitted_at);"
        "CREATE INDEX IF NOT EXISTS hosts_status ON hosts (status);"
        # Releases before this one kept a row per agent tuple (32 a host at 8 slots and 4
        # models) and per slot with its token: copies of what the host's record holds (a token
        # is its host_id and slot, section 1), and most of an enrolment's writes. The record
        # is now the only copy.
        "DROP TABLE IF EXISTS agents;"
        "DROP TABLE IF EXISTS slots;"
    )
    with transaction(db):
        pending.backfill(db)
        _scrub_join_tokens(db)
    return db


def _scrub_join_tokens(db: sqlite3.Connection) -> None:
    """Older releases kept each enrolment record with its join token in clear: drop them."""
    for table, column in (
        ("hosts", "record"),
        ("hosts", "pending_record"),
        ("pending_keys", "record"),
    ):
        db.execute(
            f"UPDATE {table} SET {column} = json_set({column}, '$.join_token', json('null'))"
            f" WHERE json_extract({column}, '$.join_token') IS NOT NULL"
        )


def check(db: sqlite3.Connection) -> list[str]:
    """Consistency problems found (empty when sound): SQLite's own check plus our invariants."""
    problems = [r[0] for r in db.execute("PRAGMA integrity_check") if r[0] != "ok"]
    problems += [f"foreign key violation in {r[0]}" for r in db.execute("PRAGMA foreign_key_check")]
    for row in db.execute(
        "SELECT row, host_id, hostname, mac, record FROM hosts WHERE status = 'active'"
    ):
        if row["record"] is None:
            problems.append(f"active host {row['hostname']} has no accepted record")
            continue
        try:
            EnrolmentRecord.from_dict(loads(row["record"], "stored record"))
        except RejectedError as error:
            problems.append(f"the record of host_id {row['host_id']} is refused: {error}")
    return problems
