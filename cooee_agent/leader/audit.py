"""The append-only, hash-chained audit log of submissions, receipts and decisions, with a head
signed by the Leader (docs/PROTOCOL.md section 10.4).

Each entry's ``hash`` is SHA-256 of the canonical JSON of ``{"at", "event", "payload", "prev",
"seq"}``, where ``prev`` is the previous entry's hash (64 zeros for the first). The head
``{"hash", "seq"}`` of the last entry is signed by the Leader's Ed25519 key behind
``cooee-audit-head-v1\\n``: editing an entry breaks its hash; deleting the last entries (which
leaves a valid chain) no longer matches the signed head.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cooee_agent.protocol import b64
from cooee_agent.protocol.keys import raw_public, verify_signature
from cooee_agent.protocol.schema import canonical, loads

GENESIS = "0" * 64
HEAD_CONTEXT = b"cooee-audit-head-v1\n"
EVENTS = ("submission", "receipt", "decision")

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    signer TEXT NOT NULL,
    sig TEXT NOT NULL
)
"""
# Applied with executescript (a trigger body holds semicolons): the log cannot be changed by
# mistake through SQL; someone editing the file on purpose is what the hash chain is for.
TRIGGERS = """
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    at: str
    event: str
    payload: dict[str, Any]
    prev: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "event": self.event,
            "payload": self.payload,
            "prev": self.prev,
            "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class Head:
    seq: int
    hash: str
    signer: str  # the Leader's Ed25519 verify key, base64url
    sig: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash, "signer": self.signer, "sig": self.sig}


def entry_hash(seq: int, at: str, event: str, payload: dict[str, Any], prev: str) -> str:
    value = {"at": at, "event": event, "payload": payload, "prev": prev, "seq": seq}
    return hashlib.sha256(canonical(value)).hexdigest()


def head_signing_input(seq: int, hash_hex: str) -> bytes:
    return HEAD_CONTEXT + canonical({"hash": hash_hex, "seq": seq})


def append(
    db: sqlite3.Connection,
    event: str,
    payload: dict[str, Any],
    *,
    at: str,
    key: Ed25519PrivateKey,
) -> int:
    """Append one entry and re-sign the head; returns its seq. Call inside the transaction that
    stores what the entry records, so the two are kept or lost together."""
    if event not in EVENTS:
        raise ValueError(f"audit event {event!r} is not one of {', '.join(EVENTS)}")
    last = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (1, GENESIS) if last is None else (last[0] + 1, last[1])
    digest = entry_hash(seq, at, event, payload, prev)
    db.execute(
        "INSERT INTO audit (seq, at, event, payload, prev, hash) VALUES (?, ?, ?, ?, ?, ?)",
        (seq, at, event, canonical(payload).decode("utf-8"), prev, digest),
    )
    sig = b64.encode(key.sign(head_signing_input(seq, digest)))
    db.execute(
        "INSERT OR REPLACE INTO audit_head (id, seq, hash, signer, sig) VALUES (1, ?, ?, ?, ?)",
        (seq, digest, b64.encode(raw_public(key)), sig),
    )
    return seq


def next_seq(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT max(seq) FROM audit").fetchone()
    return 1 if row[0] is None else int(row[0]) + 1


def raw_entries(db: sqlite3.Connection) -> Iterator[dict[str, Any]]:
    """The stored rows as they are (payload text unparsed), in seq order."""
    for row in db.execute("SELECT seq, at, event, payload, prev, hash FROM audit ORDER BY seq"):
        yield {
            "seq": row[0],
            "at": row[1],
            "event": row[2],
            "payload": row[3],
            "prev": row[4],
            "hash": row[5],
        }


def head(db: sqlite3.Connection) -> Head | None:
    row = db.execute("SELECT seq, hash, signer, sig FROM audit_head WHERE id = 1").fetchone()
    return None if row is None else Head(row[0], row[1], row[2], row[3])


def export_lines(db: sqlite3.Connection) -> Iterator[dict[str, Any]]:
    """The log as JSON-lines objects: each entry, then ``{"head": ...}`` (PROTOCOL.md 10.4)."""
    for raw in raw_entries(db):
        yield {**raw, "payload": loads(raw["payload"], f"audit entry {raw['seq']} payload")}
    signed = head(db)
    if signed is not None:
        yield {"head": signed.to_dict()}


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    entries: int
    broken_seq: int | None = None  # the first entry that fails (or the head's seq)
    problem: str = ""


def verify(
    entries: Iterable[dict[str, Any]], signed_head: dict[str, Any] | None, verify_key: bytes
) -> Verdict:
    """Check a whole log: seqs 1, 2, ...; each ``prev`` the hash before; each hash recomputed;
    the head signed by ``verify_key`` and naming the last entry. ``payload`` may be the stored
    text or the parsed object (an export). Stops at the first broken entry."""
    prev, expected, count = GENESIS, 1, 0
    for raw in entries:
        seq = raw.get("seq")
        try:
            payload = raw["payload"]
            if isinstance(payload, str):
                payload = loads(payload, "payload")
                if canonical(payload).decode("utf-8") != raw["payload"]:
                    return Verdict(False, count, seq, "its payload is not canonical JSON")
            if seq != expected:
                return Verdict(False, count, seq, f"seq {seq} where {expected} was expected")
            if raw["prev"] != prev:
                return Verdict(False, count, seq, "prev is not the previous entry's hash")
            recomputed = entry_hash(seq, raw["at"], raw["event"], payload, raw["prev"])
        except (KeyError, TypeError, ValueError) as error:
            return Verdict(False, count, seq, f"is malformed: {error}")
        if recomputed != raw["hash"]:
            return Verdict(False, count, seq, "its hash does not match its contents")
        prev, expected, count = raw["hash"], expected + 1, count + 1
    if signed_head is None:
        if count:
            return Verdict(False, count, None, "the log has entries but no signed head")
        return Verdict(True, 0)
    try:
        signature = b64.decode(signed_head["sig"], 64)
        signer = b64.decode(signed_head["signer"], 32)
        head_seq, head_hash = int(signed_head["seq"]), str(signed_head["hash"])
    except (KeyError, TypeError, ValueError) as error:
        return Verdict(False, count, None, f"the head is malformed: {error}")
    if signer != verify_key or not verify_signature(
        signer, signature, head_signing_input(head_seq, head_hash)
    ):
        return Verdict(False, count, head_seq, "the head is not signed by this Leader's key")
    if (head_seq, head_hash) != (count, prev):
        missing = f"entries {count + 1}..{head_seq} are missing" if head_seq > count else ""
        return Verdict(
            False,
            count,
            head_seq,
            f"the signed head names entry {head_seq} ({head_hash[:12]}…), the log ends at "
            f"{count} ({prev[:12]}…)" + (f": {missing}" if missing else ""),
        )
    return Verdict(True, count)
