"""PR and DR submissions to SLURP, and the Leader's receipt and decision that answer them.

A **PR** proposes a change to the shared context at one UCXL address (a unified diff or a
replacement document); a **DR** is a decision record in the Nygard ADR shape. Both are signed by
the agent and sealed to the Leader; the receipt and the decision are signed by the Leader and
sealed to the agent. The types are normative (docs/PROTOCOL.md section 10).

Multi-line texts (descriptions, diffs, documents, a DR's context, decision and consequences)
travel as unpadded base64url of their UTF-8 bytes (a diff: of its exact bytes): record strings
may hold no control characters (section 4), and a diff is full of newlines and tabs.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

import msgspec

from cooee_agent.errors import AddressError
from cooee_agent.identity import ucxl
from cooee_agent.protocol import b64
from cooee_agent.protocol.records import (
    Code,
    Count,
    Ed25519Key,
    FieldError,
    KeyHex,
    LongText,
    Nonce,
    Record,
    Text,
    Time,
    check_header,
    check_time,
)
from cooee_agent.protocol.schema import canonical, convert, fail, text

SUBMISSION_KINDS = ("pr", "dr")
DR_STATUSES = ("proposed", "accepted", "rejected", "superseded")
CHANGE_FORMS = ("diff", "document")
# One blob's base64url text; the envelope's 65,536 bytes bound the whole submission first, so
# this only keeps a single field from being unbounded on its own.
MAX_BLOB_CHARS = 65536
MAX_DR_ADDRESSES = 64

Blob = Annotated[str, text(MAX_BLOB_CHARS, "[A-Za-z0-9_-]*", min_length=0)]
UcxlAddress = Annotated[str, text(255)]
SubmissionKind = Literal["pr", "dr"]
DrStatus = Literal["proposed", "accepted", "rejected", "superseded"]


def blob(data: bytes | str) -> str:
    """A text (UTF-8) or exact bytes as the record carries them."""
    return b64.encode(data.encode("utf-8") if isinstance(data, str) else data)


def blob_bytes(value: str, field: str = "blob") -> bytes:
    try:
        return b64.decode(value)
    except ValueError as error:
        raise FieldError(field, f"is not canonical unpadded base64url: {error}") from None


def blob_text(value: str, field: str = "blob") -> str:
    """A blob that must hold UTF-8 text."""
    try:
        return blob_bytes(value, field).decode("utf-8")
    except UnicodeDecodeError as error:
        raise FieldError(field, f"is not UTF-8 text: {error}") from None


def _check_text_blob(value: str, field: str, *, required: bool) -> None:
    decoded = blob_text(value, field)
    if required and not decoded.strip():
        raise FieldError(field, "must not be empty")


def _check_address(value: str, field: str) -> None:
    try:
        ucxl.parse(value)
    except AddressError as error:
        raise FieldError(field, str(error)) from None


class PrRecord(Record, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A proposed change to the shared context at ``address``; signed by the agent, sealed."""

    schema: Literal[1] = 1
    kind: Literal["pr"] = "pr"
    nonce: Nonce  # the submission's id
    issued_at: Time
    title: Text
    description: Blob  # UTF-8 text, may be empty
    address: UcxlAddress
    change_form: Literal["diff", "document"]
    change: Blob  # a unified diff (its exact bytes) or the replacement document

    def __post_init__(self) -> None:
        check_time(self.issued_at)
        _check_address(self.address, "address")
        _check_text_blob(self.description, "description", required=False)
        if not blob_bytes(self.change, "change"):
            raise FieldError("change", "must not be empty")


class DrRecord(Record, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A decision record (Nygard's ADR); signed by the agent, sealed."""

    schema: Literal[1] = 1
    kind: Literal["dr"] = "dr"
    nonce: Nonce
    issued_at: Time
    title: Text
    status: DrStatus
    context: Blob
    decision: Blob
    consequences: Blob  # may be empty
    addresses: Annotated[tuple[UcxlAddress, ...], msgspec.Meta(max_length=MAX_DR_ADDRESSES)]
    supersedes: Nonce | None  # the id of the DR this one replaces

    def __post_init__(self) -> None:
        check_time(self.issued_at)
        _check_text_blob(self.context, "context", required=True)
        _check_text_blob(self.decision, "decision", required=True)
        _check_text_blob(self.consequences, "consequences", required=False)
        for index, address in enumerate(self.addresses):
            _check_address(address, f"addresses[{index}]")
        if len(set(self.addresses)) != len(self.addresses):
            raise FieldError("addresses", "names an address twice")
        if self.supersedes == self.nonce:
            raise FieldError("supersedes", "names this DR itself")


class Receipt(Record, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The Leader's answer to a submission: stored (``received``) or refused, and why."""

    schema: Literal[1] = 1
    kind: Literal["receipt"] = "receipt"
    nonce: Nonce
    issued_at: Time
    agent_key: Ed25519Key  # the submitter
    submission: Nonce  # the submission's id (its record's nonce)
    submission_kind: SubmissionKind
    digest: KeyHex  # submission_digest of what was received
    outcome: Literal["received", "refused"]
    reason: Code  # "received", or why it was refused (revoked, not-approved, ...)
    detail: LongText
    audit_seq: Count | None  # the audit entry of the stored submission; null when refused

    def __post_init__(self) -> None:
        check_time(self.issued_at)
        if (self.outcome == "received") != (self.audit_seq is not None):
            raise FieldError("audit_seq", "is set exactly when the submission was received")


class Decision(Record, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An operator's verdict on a stored submission, signed by the Leader."""

    schema: Literal[1] = 1
    kind: Literal["decision"] = "decision"
    nonce: Nonce
    issued_at: Time
    agent_key: Ed25519Key
    submission: Nonce
    submission_kind: SubmissionKind
    digest: KeyHex
    decision: Literal["accepted", "rejected"]
    reason: LongText
    audit_seq: Count  # the audit entry of this decision

    def __post_init__(self) -> None:
        check_time(self.issued_at)


SubmissionRecord = PrRecord | DrRecord


def submission_from_dict(value: Any) -> SubmissionRecord:
    """A PR or DR record, checked (RejectedError ``schema`` naming the field otherwise)."""
    kind = check_header(value)["kind"]
    if kind == "pr":
        return convert(value, PrRecord)
    if kind == "dr":
        return convert(value, DrRecord)
    raise fail("kind", f"is {kind!r} where a submission (pr or dr) was expected")


def submission_digest(signed_record: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical signed record: what the receipt and the audit log name.
    Ed25519 signatures are deterministic, so the sender can compute it before sending."""
    return hashlib.sha256(canonical(signed_record)).hexdigest()
