"""The COOEE envelope (v, kind, address, sent_at, body, sender, sig) and the signed record inside
sealed bodies; both signed with Ed25519 over canonical JSON behind a domain-separation prefix."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec
import msgspec.json
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cooee_agent.errors import AddressError
from cooee_agent.identity import ucxl
from cooee_agent.protocol import b64
from cooee_agent.protocol.errors import RejectedError
from cooee_agent.protocol.keys import raw_public, verify_signature
from cooee_agent.protocol.kinds import KINDS, SEALED_KINDS
from cooee_agent.protocol.records import (
    Ed25519Key,
    EnrolmentRecord,
    FieldError,
    Record,
    Time,
    UsualEnrolment,
    check_time,
    now_text,
    usual_enrolment,
)
from cooee_agent.protocol.schema import canonical, convert, fail, loads, text

ENVELOPE_VERSION = 1
MAX_ENVELOPE_BYTES = 64 * 1024
ENVELOPE_CONTEXT = b"cooee-envelope-v1\n"
RECORD_CONTEXT = b"cooee-record-v1\n"
ARMOR_BEGIN = "-----BEGIN AGE ENCRYPTED FILE-----"
ARMOR_END = "-----END AGE ENCRYPTED FILE-----"

_SIG_LENGTH = 86  # base64url of 64 bytes, unpadded
_KEY_LENGTH = 43  # of 32 bytes
Signature = Annotated[str, text(_SIG_LENGTH, "[A-Za-z0-9_-]{85}[AQgw]")]
EnvelopeKind = Annotated[str, text(16, "[a-z][a-z-]*")]
Address = Annotated[str, text(255)]


def _check_address(value: str) -> None:
    try:
        ucxl.parse(value)
    except AddressError as error:
        raise FieldError("address", str(error)) from None


_ENVELOPE_FIELDS = ("v", "kind", "address", "sent_at", "body", "sender", "sig")


class _Head(Record, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An envelope without its body, whose type depends on the kind."""

    v: Literal[1]
    kind: EnvelopeKind
    address: Address
    sent_at: Time
    sender: Ed25519Key
    sig: Signature

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FieldError("kind", f"is {self.kind!r}, expected one of {', '.join(KINDS)}")
        check_time(self.sent_at, "sent_at")
        _check_address(self.address)


class _SealedWire(_Head, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A sealed kind's envelope as it comes: the head and its armored body."""

    body: str


class _SignedRecordFields(Record, frozen=True, kw_only=True, forbid_unknown_fields=True):
    signer: Ed25519Key
    sig: Signature


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message on the channel. ``body`` is armored age text for sealed kinds, else a record."""

    v: int
    kind: str
    address: str
    sent_at: str
    body: Any
    sender: str
    sig: str

    def unsigned(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "kind": self.kind,
            "address": self.address,
            "sent_at": self.sent_at,
            "body": self.body,
            "sender": self.sender,
        }

    def signing_input(self) -> bytes:
        return ENVELOPE_CONTEXT + canonical(self.unsigned())

    def to_bytes(self) -> bytes:
        return canonical({**self.unsigned(), "sig": self.sig})

    @property
    def sender_key(self) -> bytes:
        return b64.decode(self.sender, 32)


def make_envelope(
    kind: str,
    address: str,
    body: Any,
    key: Ed25519PrivateKey,
    *,
    sent_at: datetime | None = None,
) -> Envelope:
    """Sign and return an envelope; raises RejectedError("schema") if it would exceed 64 KiB."""
    unsigned = {
        "v": ENVELOPE_VERSION,
        "kind": kind,
        "address": address,
        "sent_at": now_text(sent_at),
        "body": body,
        "sender": b64.encode(raw_public(key)),
    }
    sig = b64.encode(key.sign(ENVELOPE_CONTEXT + canonical(unsigned)))
    signed = Envelope(**unsigned, sig=sig)
    size = len(signed.to_bytes())
    if size > MAX_ENVELOPE_BYTES:
        raise fail("envelope", f"is {size} bytes, over the {MAX_ENVELOPE_BYTES}-byte limit")
    return signed


def envelope_bytes(
    kind: str,
    address: str,
    body: Any,
    key: Ed25519PrivateKey,
    *,
    sent_at: datetime | None = None,
    sender: str | None = None,
) -> bytes:
    """``make_envelope(...).to_bytes()``, with the body encoded once rather than three times.
    ``sender``: the key's verify key in base64url, when the caller has it."""
    unsigned = canonical(
        {
            "v": ENVELOPE_VERSION,
            "kind": kind,
            "address": address,
            "sent_at": now_text(sent_at),
            "body": body,
            "sender": sender if sender is not None else b64.encode(raw_public(key)),
        }
    )
    sig = b64.encode(key.sign(ENVELOPE_CONTEXT + unsigned))
    # Keys sorted: the signed envelope is the unsigned one with the sig before the "v" that
    # ends it (the layout _parse_canonical_sealed reads).
    assert unsigned.endswith(_VERSION_FIELD)
    data = b"".join(
        (unsigned[: -len(_VERSION_FIELD)], b',"sig":"', sig.encode("ascii"), b'"', _VERSION_FIELD)
    )
    if len(data) > MAX_ENVELOPE_BYTES:
        raise fail("envelope", f"is {len(data)} bytes, over the {MAX_ENVELOPE_BYTES}-byte limit")
    return data


def parse_envelope(data: bytes) -> Envelope:
    """Parse and check an envelope's form (size, JSON, fields) and verify its signature.

    Raises RejectedError with reason ``schema`` or ``bad-signature``.
    """
    if not isinstance(data, bytes | bytearray):
        raise fail("envelope", "must be bytes")
    if len(data) > MAX_ENVELOPE_BYTES:
        raise fail("envelope", f"is {len(data)} bytes, over the {MAX_ENVELOPE_BYTES}-byte limit")
    data = bytes(data)
    fast = _parse_canonical_sealed(data)
    if fast is not None:
        return fast
    value = loads(data, "envelope")
    if not isinstance(value, dict):
        raise fail("envelope", "must be a JSON object")
    extra = sorted(set(value) - set(_ENVELOPE_FIELDS))
    if extra:
        raise fail("envelope", f"has unknown field(s) {', '.join(map(repr, extra))}")
    if "body" not in value:
        raise fail("envelope", "misses the field(s) body")
    body = value.pop("body")
    convert(value, _Head, "envelope")
    if value["kind"] in SEALED_KINDS:
        _check_armor(body)
    elif not isinstance(body, dict):
        raise fail("envelope.body", f"of a {value['kind']} envelope must be a record object")
    envelope = Envelope(body=body, **value)
    if not verify_signature(
        envelope.sender_key, b64.decode(envelope.sig, 64), envelope.signing_input()
    ):
        raise RejectedError("bad-signature", "the envelope signature does not verify")
    return envelope


_ARMOR_HEAD = (ARMOR_BEGIN + "\n").encode("ascii")
_ARMOR_TAIL = ("\n" + ARMOR_END).encode("ascii")
_ARMOR_LINES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\n"


def is_armored(body: Any) -> bool:
    """age armor as strict PEM: the begin line, lines of base64 (LF ends only), the end line
    and at most one LF after it."""
    # Byte operations rather than a regular expression: a 13 KB body took 20 us through one.
    if not isinstance(body, str) or not body.isascii():
        return False
    raw = body.encode("ascii")
    end = len(raw) - 1 if raw.endswith(_ARMOR_TAIL + b"\n") else len(raw)
    return (
        raw.startswith(_ARMOR_HEAD)
        and raw.endswith(_ARMOR_TAIL, 0, end)
        and end - len(_ARMOR_TAIL) >= len(_ARMOR_HEAD)
        and not raw[len(_ARMOR_HEAD) : end - len(_ARMOR_TAIL)].translate(None, _ARMOR_LINES)
    )


_SEALED_DECODER = msgspec.json.Decoder(_SealedWire)
# A canonical envelope ends ,"sig":"S","v":1} (keys sorted, S of fixed length); what it signs is
# the same bytes without the sig field.
_SIG_FIELD = len(b',"sig":"') + _SIG_LENGTH + len(b'"')
_VERSION_FIELD = b',"v":1}'


def _parse_canonical_sealed(data: bytes) -> Envelope | None:
    """A sealed envelope in canonical JSON, decoded straight into its fields and its signature
    checked over the bytes as they came; None for anything else, which :func:`parse_envelope`
    then parses on its general path (and refuses there with what was wrong)."""
    try:
        wire = _SEALED_DECODER.decode(data)
    except (msgspec.MsgspecError, ValueError, TypeError, RecursionError):
        return None
    # Equal to its canonical encoding: nothing the strict parser refuses. Every head field is
    # held to printable ASCII by its pattern or, the address, by the UCXL grammar; the body must
    # be strict armor.
    if wire.kind not in SEALED_KINDS or canonical(wire) != data or not is_armored(wire.body):
        return None
    envelope = Envelope(
        v=wire.v,
        kind=wire.kind,
        address=wire.address,
        sent_at=wire.sent_at,
        body=wire.body,
        sender=wire.sender,
        sig=wire.sig,
    )
    unsigned = data[: len(data) - _SIG_FIELD - len(_VERSION_FIELD)] + _VERSION_FIELD
    if not verify_signature(
        envelope.sender_key, b64.decode(envelope.sig, 64), ENVELOPE_CONTEXT + unsigned
    ):
        raise RejectedError("bad-signature", "the envelope signature does not verify")
    return envelope


def _check_armor(body: Any) -> None:
    # Anything but strict armor is refused unread.
    if not is_armored(body):
        raise fail("envelope.body", "is not ASCII-armored age ciphertext")


def sign_record(record: Any, key: Ed25519PrivateKey) -> dict[str, Any]:
    """The signed-record object: ``{"record", "signer", "sig"}``, sig over the canonical record
    (a record Struct or its dict: both encode to the same canonical bytes)."""
    return {
        "record": record,
        "signer": b64.encode(raw_public(key)),
        "sig": b64.encode(key.sign(RECORD_CONTEXT + canonical(record))),
    }


def signed_record_bytes(record: Any, key: Ed25519PrivateKey, signer: str | None = None) -> bytes:
    """``canonical(sign_record(record, key))`` with the record encoded once: the canonical
    signed record is {"record":R,"sig":"S","signer":"K"}. ``signer``: the key's verify key in
    base64url, when the caller has it."""
    covered = canonical(record)
    sig = b64.encode(key.sign(RECORD_CONTEXT + covered))
    if signer is None:
        signer = b64.encode(raw_public(key))
    return b"".join(
        (
            _RECORD_HEAD,
            covered,
            b',"sig":"',
            sig.encode("ascii"),
            b'","signer":"',
            signer.encode("ascii"),
            b'"}',
        )
    )


R = TypeVar("R", bound=Record)


@dataclass(frozen=True, slots=True)
class SignedRecord(Generic[R]):
    """A signed record whose signature verified; its record's own rules are checked when it is
    asked for (:meth:`record`), so a caller keeps the order of checks in PROTOCOL.md section 6:
    signer and address before the record's schema."""

    signer: bytes
    record_type: type[R]
    typed: R | None  # decoded into its type already (the canonical fast path), not yet checked
    value: Any  # the decoded JSON, when not
    # The record's canonical bytes as they came and were signed (the fast path only).
    canonical_bytes: bytes | None = None

    def record(self) -> R:
        if self.typed is None:
            return self.record_type.from_dict(self.value)
        self.typed.check()
        return self.typed


def open_signed_record_as(data: bytes, record_type: type[R]) -> SignedRecord[R]:
    """:func:`open_signed_record` for a record of ``record_type``: the same refusals, the same
    order, the same record.

    Canonical JSON (what every implementation sends) is decoded straight into the record's type
    and its signature checked over the record's bytes as they came. Anything else, and anything
    the typed decode refuses, takes the general path, whose refusals name what was wrong.
    """
    fast = _open_canonical(data, record_type)
    if fast is not None:
        return fast
    value, signer = open_signed_record(data)
    return SignedRecord(signer, record_type, None, value)


# A canonical signed record is {"record":R,"sig":"S","signer":"K"} (keys sorted), with S and K
# of fixed length: R, the bytes the signature covers, is found without re-encoding it.
_RECORD_HEAD = b'{"record":'
_SIGNED_TAIL = len(b',"sig":"') + _SIG_LENGTH + len(b'","signer":"') + _KEY_LENGTH + len(b'"}')
_SIGNED_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {}
# Record types first decoded as a laxer type, and the function that makes the record from it
# or returns None when it must be decoded as its own type (records.usual_enrolment).
_USUAL_FORMS: dict[type[Any], tuple[type[Any], Callable[[Any], Any]]] = {
    EnrolmentRecord: (UsualEnrolment, usual_enrolment)
}
# Bytes that every canonical record of printable ASCII is made of: with none other and no
# backslash (so no escaped control character), no string in it holds a forbidden character.
_PRINTABLE_ASCII = bytes(range(0x20, 0x7F))


def _signed_decoder(record_type: type[Any]) -> msgspec.json.Decoder[Any]:
    decoder = _SIGNED_DECODERS.get(record_type)
    if decoder is None:
        decoder = _SIGNED_DECODERS[record_type] = msgspec.json.Decoder(
            msgspec.defstruct(
                f"Signed{record_type.__name__}",
                [("record", record_type), ("sig", Signature), ("signer", Ed25519Key)],
                forbid_unknown_fields=True,
                frozen=True,
                kw_only=True,
            )
        )
    return decoder


def _decode_signed(data: bytes, record_type: type[R]) -> tuple[Any, R] | None:
    """(the signed record decoded, its record as ``record_type``), or None when ``data`` is
    not a signed ``record_type`` that the typed decode takes."""
    usual = _USUAL_FORMS.get(record_type)
    if usual is not None:
        form, make = usual
        try:
            signed = _signed_decoder(form).decode(data)
        except (msgspec.MsgspecError, ValueError, TypeError, RecursionError):
            return None  # refused by the laxer form, so by the record's own type too
        record = make(signed.record)
        if record is not None:
            return signed, record
    try:
        signed = _signed_decoder(record_type).decode(data)
    except (msgspec.MsgspecError, ValueError, TypeError, RecursionError):
        return None
    return signed, signed.record


def _open_canonical(data: bytes, record_type: type[R]) -> SignedRecord[R] | None:
    if b"\\" in data or data.translate(None, _PRINTABLE_ASCII):
        return None  # escapes or non-ASCII text: the general path checks every character
    decoded = _decode_signed(data, record_type)
    if decoded is None:
        return None
    signed, record = decoded
    # Equal to its own canonical encoding: no duplicate key, no float, no spacing, no other
    # laxity the strict parser refuses, and the layout above holds. (A laxer form encodes its
    # fields under the same names, so to the same bytes.)
    if canonical(signed) != data or not data.startswith(_RECORD_HEAD):
        return None
    signer = b64.decode(signed.signer, 32)
    covered = data[len(_RECORD_HEAD) : len(data) - _SIGNED_TAIL]
    if not verify_signature(signer, b64.decode(signed.sig, 64), RECORD_CONTEXT + covered):
        raise RejectedError("bad-signature", "the record signature does not verify")
    return SignedRecord(signer, record_type, record, None, covered)


def open_signed_record(data: bytes) -> tuple[Any, bytes]:
    """Parse a signed record and verify its signature; returns (record value, signer key)."""
    value = loads(data, "signed record")
    if not isinstance(value, dict):
        raise fail("signed record", "must be a JSON object")
    if set(value) != {"record", "signer", "sig"}:
        raise fail("signed record", "must have exactly the fields record, signer, sig")
    record = value.pop("record")
    convert(value, _SignedRecordFields, "signed record")
    signer = b64.decode(value["signer"], 32)
    if not verify_signature(
        signer, b64.decode(value["sig"], 64), RECORD_CONTEXT + canonical(record)
    ):
        raise RejectedError("bad-signature", "the record signature does not verify")
    return record, signer
