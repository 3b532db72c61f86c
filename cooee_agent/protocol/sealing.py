"""Seal and open enrolments and assignments: sign, age-encrypt (armored), envelope; and back.

Opening checks in a fixed order and stops at the first failure, each with its own reason:
envelope form (schema), envelope signature (bad-signature), sent_at (stale), decryption
(wrong-recipient), record signature (bad-signature), signer and address (key-mismatch), record
schema and canonical keys (schema, key-mismatch), issued_at (stale). The replay check needs the
Leader's persisted cache and happens in cooee_agent.leader.registrar.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyrage
from pyrage import x25519

from cooee_agent.identity import ucxl
from cooee_agent.protocol import b64
from cooee_agent.protocol.envelope import (
    Envelope,
    envelope_bytes,
    make_envelope,
    open_signed_record,
    open_signed_record_as,
    parse_envelope,
    signed_record_bytes,
)
from cooee_agent.protocol.errors import RejectedError
from cooee_agent.protocol.keys import AgentKeys, LeaderBundle, LeaderKeys, key_id
from cooee_agent.protocol.kinds import KINDS, SEALED_KINDS
from cooee_agent.protocol.records import (
    Assignment,
    EnrolmentRecord,
    parse_time,
    validate_record,
)
from cooee_agent.protocol.schema import fail, loads

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Window:
    """Freshness: a message may be at most ``max_age_s`` old and ``max_skew_s`` in the future."""

    max_age_s: int = 600
    max_skew_s: int = 60

    def check(self, what: str, stamp: str, now: datetime) -> None:
        moment = parse_time(stamp)
        if moment < now - timedelta(seconds=self.max_age_s):
            raise RejectedError(
                "stale", f"{what} {stamp} is older than the {self.max_age_s} s freshness window"
            )
        if moment > now + timedelta(seconds=self.max_skew_s):
            raise RejectedError(
                "stale", f"{what} {stamp} is more than {self.max_skew_s} s in the future"
            )


DEFAULT_WINDOW = Window()


def address_for(kind: str, agent_id: str) -> str:
    """The UCXL address an envelope of ``kind`` about agent ``agent_id`` is sent to."""
    if _AGENT_ID.fullmatch(agent_id) and kind in _ADDRESS_HEADS:
        return _ADDRESS_HEADS[kind] + agent_id  # what the general form below gives (tested)
    return _address(kind, agent_id)


def _address(kind: str, agent_id: str) -> str:
    if kind == "enrolment":
        return str(ucxl.enrol_address(agent_id))
    return str(ucxl.Address("any", "admin", "COOEE", kind, "#", f"agentid/{agent_id}"))


def _agent_id_of(address: str) -> str:
    """The agent id the path of ``address`` (an envelope's, so one that parses) names, or ""
    when it names none."""
    # The Leader reads one per message, and parsing the address again costs 4 us. The path of
    # an address that parses and starts with a head is "agentid/" and the rest (tested).
    for head in _ADDRESS_HEADS.values():
        if address.startswith(head):
            return address[len(head) :]
    path = ucxl.parse(address).path
    return path.removeprefix("agentid/") if path.startswith("agentid/") else ""


# An agent id: key_id's 10 Crockford characters. The address of each kind up to its agent id.
_AGENT_ID = re.compile("[0-9A-HJKMNP-TV-Z]{10}")
_ADDRESS_HEADS = {kind: _address(kind, "0" * 10)[:-10] for kind in KINDS}


def _encrypt(payload: bytes, recipients: Sequence[str]) -> str:
    parsed = [x25519.Recipient.from_str(recipient) for recipient in recipients]
    return pyrage.encrypt(payload, parsed, armored=True).decode("ascii")


def _decrypt(body: str, identities: Sequence[x25519.Identity]) -> bytes:
    try:
        return pyrage.decrypt(body.encode("ascii"), list(identities))
    except pyrage.DecryptError as error:
        if "no matching keys" in str(error).lower():
            raise RejectedError(
                "wrong-recipient", "the body is not sealed to any of this reader's age identities"
            ) from error
        raise fail("envelope.body", f"is not age ciphertext that opens: {error}") from error


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def seal_enrolment(
    record: EnrolmentRecord,
    agent_keys: AgentKeys,
    leader_bundle: LeaderBundle,
    *,
    sent_at: datetime | None = None,
) -> bytes:
    """The enrolment envelope: record signed by the agent, sealed to every Leader recipient.

    A resend must be a new seal (new record nonce and times): the Leader refuses a replayed
    nonce, and an old one goes stale.
    """
    if record.agent_ed25519 != b64.encode(agent_keys.verify_key):
        raise fail("record.agent_key", "is not the key this record is signed with")
    signed = signed_record_bytes(record, agent_keys.signing)
    body = _encrypt(signed, leader_bundle.recipients)
    return envelope_bytes(
        "enrolment",
        address_for("enrolment", agent_keys.agent_id),
        body,
        agent_keys.signing,
        sent_at=sent_at,
    )


def _open_sealed(
    data: bytes,
    kind: str,
    identities: Sequence[x25519.Identity],
    window: Window | None,
    now: datetime | None,
) -> tuple[Envelope, Any, bytes]:
    return _open_parsed(parse_envelope(data), kind, identities, window, now)


def _open_parsed(
    envelope: Envelope,
    kind: str,
    identities: Sequence[x25519.Identity],
    window: Window | None,
    now: datetime | None,
) -> tuple[Envelope, Any, bytes]:
    _, record, signer = _open_plain_record(envelope, kind, identities, window, now)
    return envelope, record, signer


def _open_plain_record(
    envelope: Envelope,
    kind: str,
    identities: Sequence[x25519.Identity],
    window: Window | None,
    now: datetime | None,
) -> tuple[bytes, Any, bytes]:
    """(the signed record's plaintext, its record, the signer) of a parsed sealed envelope."""
    plain = _open_body(envelope, kind, identities, window, now)
    record, signer = open_signed_record(plain)
    _check_signer(envelope, signer)
    return plain, record, signer


def _open_body(
    envelope: Envelope,
    kind: str,
    identities: Sequence[x25519.Identity],
    window: Window | None,
    now: datetime | None,
) -> bytes:
    """The decrypted body of a parsed sealed envelope of ``kind`` sent within the window."""
    if envelope.kind != kind:
        raise fail("envelope.kind", f"is {envelope.kind!r} where {kind!r} was expected")
    if window is not None:
        window.check("envelope sent_at", envelope.sent_at, _now(now))
    return _decrypt(envelope.body, identities)


def _check_signer(envelope: Envelope, signer: bytes) -> None:
    if signer != envelope.sender_key:
        raise RejectedError("key-mismatch", "the record is signed by another key than the envelope")


@dataclass(frozen=True, slots=True)
class OpenedEnrolment:
    record: EnrolmentRecord
    envelope: Envelope
    # The record's canonical bytes as the agent signed them, when they came canonical (the
    # Leader stores them rather than encoding the record again).
    record_bytes: bytes | None = None


def open_enrolment(
    data: bytes,
    leader_keys: LeaderKeys,
    *,
    window: Window = DEFAULT_WINDOW,
    now: datetime | None = None,
) -> OpenedEnrolment:
    """Open and verify an enrolment envelope (everything but the replay check)."""
    envelope = parse_envelope(data)
    plain = _open_body(envelope, "enrolment", leader_keys.identities, window, now)
    signed = open_signed_record_as(plain, EnrolmentRecord)
    _check_signer(envelope, signed.signer)
    if _agent_id_of(envelope.address) != key_id(signed.signer):
        raise RejectedError(
            "key-mismatch", f"address {envelope.address} does not name the sender's agent id"
        )
    record = signed.record()
    if record.agent_ed25519 != envelope.sender:
        raise RejectedError("key-mismatch", "record.agent_key.ed25519 is not the signing key")
    window.check("record issued_at", record.issued_at, _now(now))
    return OpenedEnrolment(record, envelope, signed.canonical_bytes)


def seal_assignment(
    assignment: Assignment,
    leader_keys: LeaderKeys,
    agent_recipient: str,
    *,
    sent_at: datetime | None = None,
) -> bytes:
    """The assignment envelope: signed by the Leader, sealed to the agent's age recipient."""
    signer = leader_keys.verify_text
    signed = signed_record_bytes(assignment, leader_keys.signing, signer)
    body = _encrypt(signed, [agent_recipient])
    agent_id = key_id(b64.decode(assignment.agent_key, 32))
    return envelope_bytes(
        "assignment",
        address_for("assignment", agent_id),
        body,
        leader_keys.signing,
        sent_at=sent_at,
        sender=signer,
    )


def open_assignment(
    data: bytes,
    agent_keys: AgentKeys,
    leader_bundle: LeaderBundle,
    *,
    window: Window | None = None,
    now: datetime | None = None,
) -> Assignment:
    """Open an assignment from the Leader named by ``leader_bundle``, meant for ``agent_keys``.

    Freshness is off by default: an assignment carried back by hand may be hours old. The agent
    matches ``enrolment_nonce`` against its outbox instead, which also defeats replays.
    """
    envelope = parse_envelope(data)
    if envelope.sender_key != leader_bundle.verify_key:
        raise RejectedError("key-mismatch", "the assignment is not signed by the pinned Leader key")
    if _agent_id_of(envelope.address) != agent_keys.agent_id:
        raise RejectedError("wrong-recipient", f"{envelope.address} is for another agent")
    _, value, _ = _open_sealed(data, "assignment", (agent_keys.identity,), window, now)
    assignment = Assignment.from_dict(value)
    if assignment.agent_key != b64.encode(agent_keys.verify_key):
        raise RejectedError("wrong-recipient", "the assignment is for another agent key")
    if window is not None:
        window.check("record issued_at", assignment.issued_at, _now(now))
    return assignment


def seal_plain(
    record: dict[str, Any],
    key: Any,
    agent_id: str,
    *,
    sent_at: datetime | None = None,
) -> bytes:
    """An envelope whose body is a validated plain record (availability, intervention, leaving)."""
    validate_record(record)
    if record["kind"] in SEALED_KINDS:
        raise fail("kind", f"{record['kind']} records are sealed, not sent in the clear")
    envelope = make_envelope(
        record["kind"], address_for(record["kind"], agent_id), record, key, sent_at=sent_at
    )
    return envelope.to_bytes()


def open_plain(
    data: bytes,
    *,
    window: Window | None = DEFAULT_WINDOW,
    now: datetime | None = None,
) -> tuple[dict[str, Any], bytes]:
    """Verify a plain envelope; returns (validated record, sender verify key)."""
    envelope = parse_envelope(data)
    if envelope.kind in SEALED_KINDS:
        raise fail("envelope.kind", f"{envelope.kind} envelopes are sealed; open them as such")
    if _agent_id_of(envelope.address) != key_id(envelope.sender_key):
        raise RejectedError("key-mismatch", f"{envelope.address} does not name the sender")
    record = validate_record(envelope.body, envelope.kind)
    if window is not None:
        window.check("envelope sent_at", envelope.sent_at, _now(now))
        window.check("record issued_at", record["issued_at"], _now(now))
    return record, envelope.sender_key


# -- any sealed kind, by the kinds table (submissions, receipts, decisions) ----------------------


def _sealed_row(kind: str, sender: str) -> None:
    row = KINDS.get(kind)
    if row is None or not row.sealed or row.sender != sender:
        raise fail("kind", f"{kind!r} is not a sealed kind that the {sender} sends")


def seal_to_leader(
    kind: str,
    record: dict[str, Any],
    agent_keys: AgentKeys,
    leader_bundle: LeaderBundle,
    *,
    sent_at: datetime | None = None,
) -> bytes:
    """The envelope of a sealed agent-to-Leader ``kind``: ``record`` (checked against its type)
    signed by the agent, sealed to every Leader recipient. Raises RejectedError("schema") for a
    bad record or an envelope over the size limit, before anything is sent."""
    _sealed_row(kind, "agent")
    validate_record(record, kind)
    signed = signed_record_bytes(record, agent_keys.signing)
    body = _encrypt(signed, leader_bundle.recipients)
    return envelope_bytes(
        kind, address_for(kind, agent_keys.agent_id), body, agent_keys.signing, sent_at=sent_at
    )


def open_from_agent(
    data: bytes,
    leader_keys: LeaderKeys,
    kinds: Collection[str],
    *,
    window: Window | None = DEFAULT_WINDOW,
    now: datetime | None = None,
) -> tuple[dict[str, Any], dict[str, Any], Envelope]:
    """Open a sealed envelope of one of ``kinds`` from an agent, in the order of enrolments
    (PROTOCOL.md section 6) minus the record's issued_at: returns (record, signed record,
    envelope). The record's freshness and replay are the caller's (a submission is deduplicated
    on its nonce for good, so it may wait in an outbox for longer than the window)."""
    envelope = parse_envelope(data)
    if envelope.kind not in kinds:
        raise fail(
            "envelope.kind", f"is {envelope.kind!r} where one of {sorted(kinds)} was expected"
        )
    _sealed_row(envelope.kind, "agent")
    plain, value, signer = _open_plain_record(
        envelope, envelope.kind, leader_keys.identities, window, now
    )
    if _agent_id_of(envelope.address) != key_id(signer):
        raise RejectedError(
            "key-mismatch", f"address {envelope.address} does not name the sender's agent id"
        )
    record = validate_record(value, envelope.kind)
    return record, loads(plain, "signed record"), envelope


def seal_to_agent(
    kind: str,
    record: dict[str, Any],
    leader_keys: LeaderKeys,
    agent_recipient: str,
    *,
    sent_at: datetime | None = None,
) -> bytes:
    """The envelope of a sealed Leader-to-agent ``kind`` (receipt, decision): signed by the
    Leader, sealed to the agent's age recipient, addressed to the agent its ``agent_key`` names."""
    _sealed_row(kind, "leader")
    validate_record(record, kind)
    signer = leader_keys.verify_text
    signed = signed_record_bytes(record, leader_keys.signing, signer)
    body = _encrypt(signed, [agent_recipient])
    agent_id = key_id(b64.decode(record["agent_key"], 32))
    return envelope_bytes(
        kind, address_for(kind, agent_id), body, leader_keys.signing, sent_at=sent_at, sender=signer
    )


def open_from_leader(
    data: bytes,
    agent_keys: AgentKeys,
    leader_bundle: LeaderBundle,
    kinds: Collection[str],
) -> dict[str, Any]:
    """Open a sealed envelope of one of ``kinds`` from the pinned Leader, meant for this agent
    (the checks of an assignment, section 6); returns the checked record. No freshness: the
    agent matches the record against what it sent."""
    envelope = parse_envelope(data)
    if envelope.kind not in kinds:
        raise fail(
            "envelope.kind", f"is {envelope.kind!r} where one of {sorted(kinds)} was expected"
        )
    _sealed_row(envelope.kind, "leader")
    if envelope.sender_key != leader_bundle.verify_key:
        raise RejectedError("key-mismatch", "the envelope is not signed by the pinned Leader key")
    if _agent_id_of(envelope.address) != agent_keys.agent_id:
        raise RejectedError("wrong-recipient", f"{envelope.address} is for another agent")
    _, value, _ = _open_plain_record(envelope, envelope.kind, (agent_keys.identity,), None, None)
    record = validate_record(value, envelope.kind)
    if record.get("agent_key") != b64.encode(agent_keys.verify_key):
        raise RejectedError("wrong-recipient", f"the {envelope.kind} is for another agent key")
    return record
