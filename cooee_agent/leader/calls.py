"""Calls for human intervention at the Leader: verify the agents' signed calls, keep them (with the
Leader's own) in a SQLite file of the state directory, list and close them for an operator.

A host that keeps calling for the same reason does not bury the operator: while a call is open,
a new call of the same host and reason is folded into it (``count`` goes up, the newest detail
and the highest severity are kept). Nor does one that varies the reason: a host has at most
``OPEN_REASONS_PER_HOST`` open calls; past it, every new reason is folded into its one
``too-many-calls`` call.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cooee_agent.leader.database import open_database, transaction
from cooee_agent.leader.errors import RegistryError
from cooee_agent.leader.handled import Handled
from cooee_agent.leader.registry import Registry
from cooee_agent.log_limit import LimitedWarnings
from cooee_agent.protocol import b64
from cooee_agent.protocol.errors import RejectedError
from cooee_agent.protocol.records import SEVERITIES, new_nonce, now_text
from cooee_agent.protocol.sealing import DEFAULT_WINDOW, Window, open_plain

if TYPE_CHECKING:
    from cooee_agent.bus.transport import Message
    from cooee_agent.leader.dispatch import Dispatcher

log = logging.getLogger(__name__)
# Anyone on the mesh can cause these: logged in full a few times a minute (log_limit).
_refusals = LimitedWarnings(log)

CALLS_FILE = "calls.sqlite3"
OPEN_REASONS_PER_HOST = 8
OVERFLOW_REASON = "too-many-calls"
SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    origin TEXT NOT NULL CHECK (origin IN ('agent', 'leader')),
    sender TEXT,
    host_id INTEGER,
    hostname TEXT NOT NULL,
    mac TEXT,
    severity TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    count INTEGER NOT NULL DEFAULT 1,
    opened_at TEXT NOT NULL,
    last_at TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    closed_at TEXT,
    note TEXT
);
CREATE INDEX IF NOT EXISTS calls_open ON calls (status, hostname, reason);
CREATE TABLE IF NOT EXISTS call_nonces (
    nonce TEXT PRIMARY KEY,
    call_id INTEGER NOT NULL REFERENCES calls (id)
);
"""


class CallError(RegistryError):
    """No such call, or it is closed already."""


@dataclass(frozen=True, slots=True)
class Call:
    id: int
    status: str  # open | closed
    origin: str  # agent | leader
    host_id: int | None
    hostname: str
    mac: str | None
    severity: str
    reason: str
    detail: str
    count: int
    opened_at: str
    last_at: str
    closed_at: str | None
    note: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "origin": self.origin,
            "host_id": self.host_id,
            "hostname": self.hostname,
            "mac": self.mac,
            "severity": self.severity,
            "reason": self.reason,
            "detail": self.detail,
            "count": self.count,
            "opened_at": self.opened_at,
            "last_at": self.last_at,
            "closed_at": self.closed_at,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class Heard:
    """What became of one intervention envelope: ``reason`` is ``stored`` or why not."""

    stored: bool
    reason: str
    detail: str
    call: Call | None = None


class CallBook:
    """The calls file; one connection, used by one thread at a time."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = path
        self._db = open_database(path, SCHEMA, busy_timeout_s=busy_timeout_s)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> CallBook:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def record(
        self,
        *,
        nonce: str,
        origin: str,
        sender: str | None,
        host_id: int | None,
        hostname: str,
        mac: str | None,
        severity: str,
        reason: str,
        detail: str,
        issued_at: str,
        now: datetime,
    ) -> Call | None:
        """Store a call (or fold it into the open one of the same host and reason); None when
        this nonce was stored before (a replay)."""
        stamp = now_text(now)
        with transaction(self._db) as db:
            if db.execute("SELECT 1 FROM call_nonces WHERE nonce = ?", (nonce,)).fetchone():
                return None
            same = _open_call(db, hostname, mac, reason)
            if same is None and _open_reasons(db, hostname, mac) >= OPEN_REASONS_PER_HOST:
                detail = f"{reason}: {detail}"
                reason = OVERFLOW_REASON
                same = _open_call(db, hostname, mac, reason)
            if same is None:
                cursor = db.execute(
                    "INSERT INTO calls (status, origin, sender, host_id, hostname, mac, severity,"
                    " reason, detail, opened_at, last_at, issued_at)"
                    " VALUES ('open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        origin,
                        sender,
                        host_id,
                        hostname,
                        mac,
                        severity,
                        reason,
                        detail,
                        stamp,
                        stamp,
                        issued_at,
                    ),
                )
                call_id = cursor.lastrowid
            else:
                call_id = same["id"]
                worst = max(same["severity"], severity, key=SEVERITIES.index)
                db.execute(
                    "UPDATE calls SET count = count + 1, last_at = ?, issued_at = ?, detail = ?,"
                    " severity = ?, host_id = coalesce(?, host_id) WHERE id = ?",
                    (stamp, issued_at, detail, worst, host_id, call_id),
                )
            db.execute("INSERT INTO call_nonces VALUES (?, ?)", (nonce, call_id))
            return _call(db.execute("SELECT * FROM calls WHERE id = ?", (call_id,)).fetchone())

    def record_leader_call(
        self,
        *,
        hostname: str,
        mac: str | None,
        host_id: int | None,
        severity: str,
        reason: str,
        detail: str,
        now: datetime,
    ) -> Call:
        """A call the Leader raises itself (a host held for approval, host ids exhausted)."""
        call = self.record(
            nonce=new_nonce(),
            origin="leader",
            sender=None,
            host_id=host_id,
            hostname=hostname,
            mac=mac,
            severity=severity,
            reason=reason,
            detail=detail,
            issued_at=now_text(now),
            now=now,
        )
        assert call is not None  # a fresh nonce is never a replay
        return call

    def calls(self, *, include_closed: bool = False) -> list[Call]:
        where = "" if include_closed else "WHERE status = 'open'"
        rows = self._db.execute(f"SELECT * FROM calls {where} ORDER BY id").fetchall()
        return [_call(row) for row in rows]

    def get(self, call_id: int) -> Call | None:
        row = self._db.execute("SELECT * FROM calls WHERE id = ?", (call_id,)).fetchone()
        return None if row is None else _call(row)

    def close_call(self, call_id: int, *, now: datetime, note: str | None = None) -> Call:
        with transaction(self._db) as db:
            row = db.execute("SELECT * FROM calls WHERE id = ?", (call_id,)).fetchone()
            if row is None:
                raise CallError(f"no call with id {call_id}")
            if row["status"] == "closed":
                raise CallError(f"call {call_id} was closed at {row['closed_at']}")
            db.execute(
                "UPDATE calls SET status = 'closed', closed_at = ?, note = ? WHERE id = ?",
                (now_text(now), note, call_id),
            )
            log.info("call %d (%s of %s) closed", call_id, row["reason"], row["hostname"])
            return _call(db.execute("SELECT * FROM calls WHERE id = ?", (call_id,)).fetchone())


def _open_call(
    db: sqlite3.Connection, hostname: str, mac: str | None, reason: str
) -> sqlite3.Row | None:
    row: sqlite3.Row | None = db.execute(
        "SELECT * FROM calls WHERE status = 'open' AND hostname = ? AND mac IS ?"
        " AND reason = ? ORDER BY id DESC LIMIT 1",
        (hostname, mac, reason),
    ).fetchone()
    return row


def _open_reasons(db: sqlite3.Connection, hostname: str, mac: str | None) -> int:
    row = db.execute(
        "SELECT count(DISTINCT reason) FROM calls WHERE status = 'open' AND hostname = ?"
        " AND mac IS ? AND reason != ?",
        (hostname, mac, OVERFLOW_REASON),
    ).fetchone()
    return int(row[0])


def _call(row: sqlite3.Row) -> Call:
    return Call(
        id=row["id"],
        status=row["status"],
        origin=row["origin"],
        host_id=row["host_id"],
        hostname=row["hostname"],
        mac=row["mac"],
        severity=row["severity"],
        reason=row["reason"],
        detail=row["detail"],
        count=row["count"],
        opened_at=row["opened_at"],
        last_at=row["last_at"],
        closed_at=row["closed_at"],
        note=row["note"],
    )


def handle_calls(dispatcher: Dispatcher, messages: Sequence[Message]) -> list[Handled]:
    """The kinds table's handler of intervention calls (ignored by a Leader without a book)."""
    book = dispatcher.calls
    if book is None:
        return [Handled(message.topic, "ignored") for message in messages]
    return [
        Handled(
            message.topic,
            hear_call(
                dispatcher.registrar.registry,
                book,
                message.data,
                now=dispatcher.clock(),
                window=dispatcher.registrar.window,
            ).reason,
        )
        for message in messages
    ]


def hear_call(
    registry: Registry,
    book: CallBook,
    data: bytes,
    *,
    now: datetime,
    window: Window = DEFAULT_WINDOW,
) -> Heard:
    """Verify an intervention envelope and store its call; never raises for what it was sent.

    The sender must be a key the registry knows: pinned by a host, or held pending for one (an
    agent whose enrolment waits for an operator calls before it has a host_id). The call's
    hostname and host_id must be that host's.
    """
    try:
        record, sender = open_plain(data, window=window, now=now)
    except RejectedError as error:
        return _refused(error.reason, error.detail)
    if record["kind"] != "intervention":
        return _refused("schema", f"a {record['kind']} record on the intervention topic")
    key = b64.encode(sender)
    host = registry.known_key(key)
    if host is None:
        return _refused("unknown-key", f"sender {key} is no host's pinned or pending key")
    if record["hostname"] != host["hostname"]:
        return _refused(
            "key-mismatch", f"call names {record['hostname']}, the key is {host['hostname']}'s"
        )
    if record["host_id"] is not None and record["host_id"] != host["host_id"]:
        return _refused(
            "key-mismatch",
            f"call names host_id {record['host_id']}, the key's is {host['host_id']}",
        )
    call = book.record(
        nonce=record["nonce"],
        origin="agent",
        sender=key,
        host_id=host["host_id"],
        hostname=host["hostname"],
        mac=host["mac"],
        severity=record["severity"],
        reason=record["reason"],
        detail=record["detail"],
        issued_at=record["issued_at"],
        now=now,
    )
    if call is None:
        return _refused("replayed", f"call {record['nonce']} was stored before")
    log.warning(
        "intervention call %d from %s: %s (%s): %s",
        call.id,
        call.hostname,
        call.reason,
        call.severity,
        call.detail,
    )
    return Heard(True, "stored", f"call {call.id}", call)


def _refused(reason: str, detail: str) -> Heard:
    _refusals.warning(reason, "refused intervention call: %s: %s", reason, detail)
    return Heard(False, reason, detail)


# Public name of the row reader, for the read-only views (leader.readonly).
call_from_row = _call
