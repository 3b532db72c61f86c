"""Join tokens kept by the registry: created by an operator, stored only as salted hashes, each
good for a number of first contacts (one by default) until it expires or is revoked.

A token is 32 random URL-safe characters (192 bits), so a salted SHA-256 is enough: nothing
short of the token itself finds a preimage, and checking a token costs microseconds, which
matters when every forged enrolment on the mesh carries one to check.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import datetime

from cooee_agent.leader.database import transaction
from cooee_agent.leader.errors import RegistryError
from cooee_agent.protocol.records import now_text

TOKEN_BYTES = 24  # 32 characters of base64url
SALT_BYTES = 16
# Live tokens checked for each enrolment that carries one: bounds the work a forged token costs.
MAX_LIVE_TOKENS = 1024

SCHEMA = """
CREATE TABLE IF NOT EXISTS join_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    salt BLOB NOT NULL,
    digest BLOB NOT NULL,
    uses INTEGER NOT NULL CHECK (uses >= 1),
    used INTEGER NOT NULL DEFAULT 0,
    expires_at REAL,
    created_at TEXT NOT NULL,
    revoked_at TEXT,
    note TEXT
)
"""


@dataclass(frozen=True, slots=True)
class JoinToken:
    """What ``leader token list`` shows of a token (never the token: it is not kept)."""

    id: int
    uses: int
    used: int
    expires_at: float | None
    created_at: str
    revoked_at: str | None
    note: str | None

    def state(self, now: datetime) -> str:
        """live, spent, expired or revoked"""
        if self.revoked_at is not None:
            return "revoked"
        if self.used >= self.uses:
            return "spent"
        if self.expires_at is not None and self.expires_at <= now.timestamp():
            return "expired"
        return "live"

    def to_dict(self, now: datetime) -> dict[str, object]:
        return {
            "id": self.id,
            "uses": self.uses,
            "used": self.used,
            "expires_at": None
            if self.expires_at is None
            else now_text(datetime.fromtimestamp(self.expires_at, now.tzinfo)),
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "note": self.note,
            "state": self.state(now),
        }


def digest(salt: bytes, token: str) -> bytes:
    return hashlib.sha256(salt + token.encode("utf-8")).digest()


def create(
    db: sqlite3.Connection,
    *,
    now: datetime,
    uses: int = 1,
    expires_at: datetime | None = None,
    note: str | None = None,
) -> tuple[int, str]:
    """A new token: returns (id, token). The token is shown once; only its hash is kept."""
    if uses < 1:
        raise RegistryError(f"a join token needs at least one use, got {uses}")
    if expires_at is not None and expires_at <= now:
        raise RegistryError(f"a join token must expire in the future, got {now_text(expires_at)}")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    salt = secrets.token_bytes(SALT_BYTES)
    with transaction(db):
        if _live_count(db, now) >= MAX_LIVE_TOKENS:
            raise RegistryError(
                f"{MAX_LIVE_TOKENS} join tokens are live already; revoke some first"
            )
        cursor = db.execute(
            "INSERT INTO join_tokens (salt, digest, uses, expires_at, created_at, note)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                salt,
                digest(salt, token),
                uses,
                None if expires_at is None else expires_at.timestamp(),
                now_text(now),
                note,
            ),
        )
    assert cursor.lastrowid is not None
    return cursor.lastrowid, token


def listing(db: sqlite3.Connection) -> list[JoinToken]:
    rows = db.execute(
        "SELECT id, uses, used, expires_at, created_at, revoked_at, note FROM join_tokens"
        " ORDER BY id"
    ).fetchall()
    return [JoinToken(*row) for row in rows]


def revoke(db: sqlite3.Connection, token_id: int, *, now: datetime) -> JoinToken:
    with transaction(db):
        cursor = db.execute(
            "UPDATE join_tokens SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?",
            (now_text(now), token_id),
        )
        if cursor.rowcount == 0:
            raise RegistryError(f"no join token with id {token_id}")
    return next(t for t in listing(db) if t.id == token_id)


def configured(db: sqlite3.Connection) -> bool:
    """Whether an operator ever made a token: from then on first contact needs one."""
    return db.execute("SELECT 1 FROM join_tokens LIMIT 1").fetchone() is not None


def find(db: sqlite3.Connection, token: str, *, now: datetime) -> int | None:
    """The id of the live token ``token``, or None when no live token matches."""
    rows = db.execute(
        "SELECT id, salt, digest FROM join_tokens WHERE revoked_at IS NULL AND used < uses"
        " AND (expires_at IS NULL OR expires_at > ?) ORDER BY id LIMIT ?",
        (now.timestamp(), MAX_LIVE_TOKENS),
    ).fetchall()
    for row in rows:
        if hmac.compare_digest(digest(row["salt"], token), row["digest"]):
            return int(row["id"])
    return None


def spend(db: sqlite3.Connection, token_id: int) -> None:
    """One use of the token gone (inside the transaction that admits the host)."""
    db.execute("UPDATE join_tokens SET used = used + 1 WHERE id = ?", (token_id,))


def _live_count(db: sqlite3.Connection, now: datetime) -> int:
    row = db.execute(
        "SELECT count(*) FROM join_tokens WHERE revoked_at IS NULL AND used < uses"
        " AND (expires_at IS NULL OR expires_at > ?)",
        (now.timestamp(),),
    ).fetchone()
    return int(row[0])
