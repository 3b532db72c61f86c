"""The DHT's host records: what ``/cooee/host/<host_id>`` holds, how the Leader seals it, and the
validator rules every node applies to it (docs/PROTOCOL.md section 11).

A host record is an outer object anyone can check without opening it (key, sequence number,
expiry, the read key it is sealed to, the Leader's signature over all of that and the
ciphertext) around an inner ``HostInfo`` sealed with age to the cluster's read key. Members hold
the read key (it comes in their assignment), so they can open it; anyone else sees ciphertext.

It is a storage record, not a message: it never travels in an envelope, so it has no row in the
kinds table.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import msgspec
import pyrage
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pyrage import x25519

from cooee_agent.protocol import b64
from cooee_agent.protocol.envelope import Signature
from cooee_agent.protocol.errors import RejectedError
from cooee_agent.protocol.keys import raw_public, verify_signature
from cooee_agent.protocol.records import (
    MAX_SLOTS,
    AgeRecipient,
    Count,
    Ed25519Key,
    HostId,
    Hostname,
    Mac,
    Record,
    Slot,
    Text,
    Time,
    Token,
    TupleFields,
    check_hostname,
    check_time,
    now_text,
    parse_time,
)
from cooee_agent.protocol.schema import canonical, convert, fail, integer, loads, text

NAMESPACE = "cooee"
HOST_PREFIX = f"/{NAMESPACE}/host/"
HOST_RECORD_CONTEXT = b"cooee-host-record-v1\n"
# A record may name an expiry at most this far ahead of its checker's clock: bounds how long a
# revoked host's last record can be served by anyone holding a copy.
MAX_LIFETIME_S = 7 * 86400
MAX_HOST_RECORD_BYTES = 48 * 1024  # 64 agents of 8 slots with their tuples fit in ~30 KiB
HOST_STATUSES = ("active", "revoked")

Status = Literal["active", "revoked"]
# age's binary format, unpadded base64url: one line, unlike the armor the envelopes carry.
Ciphertext = Annotated[str, text(MAX_HOST_RECORD_BYTES, "[A-Za-z0-9_-]+")]


def host_key(host_id: int) -> str:
    """The DHT key of a host's record: ``/cooee/host/<host_id>`` in decimal, no leading zeros."""
    return f"{HOST_PREFIX}{host_id}"


def host_id_of_key(key: str) -> int:
    """The host_id a DHT key names; RejectedError("schema") unless it is exactly host_key(n)."""
    rest = key.removeprefix(HOST_PREFIX) if isinstance(key, str) else ""
    if not key.startswith(HOST_PREFIX) or not rest.isascii() or not rest.isdigit():
        raise fail("key", f"{key!r} is not {HOST_PREFIX}<host_id>")
    host_id = int(rest)
    if host_key(host_id) != key:
        raise fail("key", f"{key!r} is not in the canonical form {host_key(host_id)!r}")
    return host_id


class SlotTuples(Record, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One GPU slot: its gpu_id, its token and the agent tuples served on it."""

    slot: Slot
    gpu_id: Text
    token: Token
    tuples: Annotated[tuple[TupleFields, ...], msgspec.Meta(max_length=512)]


class HostInfo(Record, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The sealed part of a host record: what resolving a token shows."""

    schema: Literal[1] = 1
    kind: Literal["host-info"] = "host-info"
    host_id: HostId
    seq: Count
    issued_at: Time
    status: Status
    hostname: Hostname
    mac: Mac
    agent_key: Ed25519Key | None  # the host's pinned agent key (base64url Ed25519)
    slots: Annotated[tuple[SlotTuples, ...], msgspec.Meta(max_length=MAX_SLOTS)]

    def __post_init__(self) -> None:
        check_time(self.issued_at)
        check_hostname(self.hostname)


class HostRecord(Record, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The DHT value: checkable by anyone, openable by holders of the read key."""

    schema: Literal[1] = 1
    kind: Literal["host-record"] = "host-record"
    key: Annotated[str, text(64)]
    seq: Annotated[int, integer()]
    expires_at: Time
    read_key: AgeRecipient
    body: Ciphertext
    signer: Ed25519Key
    sig: Signature

    def __post_init__(self) -> None:
        check_time(self.expires_at, "expires_at")

    def unsigned(self) -> dict[str, object]:
        value = self.to_dict()
        value.pop("sig")
        return value

    def signing_input(self) -> bytes:
        return HOST_RECORD_CONTEXT + canonical(self.unsigned())

    def to_bytes(self) -> bytes:
        return canonical(self.to_dict())


def seal_host_record(
    info: HostInfo,
    signing: Ed25519PrivateKey,
    read_recipient: str,
    *,
    expires_at: datetime,
) -> bytes:
    """The DHT value for ``info``: sealed to ``read_recipient``, signed by the Leader."""
    body = b64.encode(pyrage.encrypt(canonical(info), [x25519.Recipient.from_str(read_recipient)]))
    draft = {
        "schema": 1,
        "kind": "host-record",
        "key": host_key(info.host_id),
        "seq": info.seq,
        "expires_at": now_text(expires_at),
        "read_key": read_recipient,
        "body": body,
        "signer": b64.encode(raw_public(signing)),
    }
    sig = b64.encode(signing.sign(HOST_RECORD_CONTEXT + canonical(draft)))
    data = canonical({**draft, "sig": sig})
    if len(data) > MAX_HOST_RECORD_BYTES:
        raise fail("host record", f"is {len(data)} bytes, over {MAX_HOST_RECORD_BYTES}")
    return data


def parse_host_record(data: bytes) -> HostRecord:
    """The outer record's form and its signature (not who signed it); RejectedError else."""
    if not isinstance(data, bytes | bytearray):
        raise fail("host record", "must be bytes")
    if len(data) > MAX_HOST_RECORD_BYTES:
        raise fail("host record", f"is {len(data)} bytes, over {MAX_HOST_RECORD_BYTES}")
    value = loads(bytes(data), "host record")
    if not isinstance(value, dict) or value.get("kind") != "host-record":
        raise fail("kind", "is not 'host-record'")
    record = convert(value, HostRecord, "host record")
    try:
        b64.decode(record.body)
    except ValueError as error:
        raise fail("host record.body", f"is not age ciphertext in base64url: {error}") from None
    if not verify_signature(
        b64.decode(record.signer, 32), b64.decode(record.sig, 64), record.signing_input()
    ):
        raise RejectedError("bad-signature", "the host record signature does not verify")
    return record


@dataclass(slots=True)
class HostRecordRules:
    """What a node accepts under ``/cooee/host/``: the DHT validator's rules.

    ``trusted`` are the raw Ed25519 verify keys of the Leaders this node trusts. ``read_key`` is
    the read key's recipient (``age1…``) this node holds, or None when it holds none (then the
    record's read key is not checked: a Leader before its first assignment, a bare relay).
    The read key changes at run time (a rotation), so this is mutable.
    """

    trusted: Collection[bytes]
    read_key: str | None = None
    clock: object = field(default=None)  # () -> datetime; None means the wall clock

    def _now(self) -> datetime:
        clock = self.clock
        return clock() if callable(clock) else datetime.now(UTC)

    def check(self, key: str, value: bytes) -> HostRecord:
        """Accept ``value`` under ``key`` or raise RejectedError naming why."""
        host_id_of_key(key)
        record = parse_host_record(value)
        if record.key != key:
            raise RejectedError("key-mismatch", f"the record is for {record.key}, not {key}")
        if b64.decode(record.signer, 32) not in set(self.trusted):
            raise RejectedError("key-mismatch", "the record is not signed by a trusted Leader key")
        now = self._now()
        expires = parse_time(record.expires_at)
        if expires <= now:
            raise RejectedError("stale", f"the record expired at {record.expires_at}")
        if expires > now + timedelta(seconds=MAX_LIFETIME_S):
            raise RejectedError(
                "stale", f"the record expires more than {MAX_LIFETIME_S} s from now"
            )
        if self.read_key is not None and record.read_key != self.read_key:
            raise RejectedError(
                "wrong-recipient", "the record is sealed to another read key than this node's"
            )
        return record

    def select(self, key: str, values: Sequence[bytes]) -> int:
        """The index of the best value: the highest sequence number among the valid ones, the
        first of equals. Invalid values lose to any valid one; with none valid, 0."""
        best, best_seq = 0, -1
        for index, value in enumerate(values):
            try:
                seq = self.check(key, value).seq
            except RejectedError:
                continue
            if seq > best_seq:
                best, best_seq = index, seq
        return best


def open_host_record(record: HostRecord, identities: Sequence[x25519.Identity]) -> HostInfo:
    """Open a checked record with the read key; RejectedError if it does not open or its inside
    disagrees with its outside."""
    try:
        plain = pyrage.decrypt(b64.decode(record.body), list(identities))
    except pyrage.DecryptError as error:
        raise RejectedError(
            "wrong-recipient", f"the record does not open with this node's read key ({error})"
        ) from error
    value = loads(plain, "host info")
    if not isinstance(value, dict) or value.get("kind") != "host-info":
        raise fail("host info.kind", "is not 'host-info'")
    info = convert(value, HostInfo, "host info")
    if host_key(info.host_id) != record.key or info.seq != record.seq:
        raise RejectedError("key-mismatch", "the sealed host info disagrees with its record")
    return info


def read_key_identity(secret: str) -> x25519.Identity:
    """The read key from its ``AGE-SECRET-KEY-1…`` text; RejectedError("schema") if bad."""
    try:
        return x25519.Identity.from_str(secret)
    except Exception as error:  # pyrage raises its own IdentityError
        raise fail("read_key", "is not an age X25519 secret key") from error


def new_read_key() -> x25519.Identity:
    return x25519.Identity.generate()
