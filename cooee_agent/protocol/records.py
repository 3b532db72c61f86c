"""The five record types (enrolment, assignment, availability, intervention, leaving) as typed
Structs, with the semantic checks their types cannot say.

The types here are normative (docs/PROTOCOL.md section 5): each field, its type and its bounds
are the wire schema. A record is a JSON object whose ``schema`` and ``kind`` fields select its
type (the kinds table, ``kinds.py``); anything else is refused with reason ``schema``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol, Self

import msgspec
import msgspec.json

from cooee_agent.errors import IdentityError, TokenError
from cooee_agent.identity import gpu_ids
from cooee_agent.identity.canonical import (
    AgentTuple,
    normalise_gpu_id,
    normalise_hostname,
    normalise_mac,
    normalise_model,
)
from cooee_agent.identity.token import MAX_GPU_SLOT, MAX_HOST_ID
from cooee_agent.identity.token import Token as DecodedToken
from cooee_agent.identity.token import decode as decode_token
from cooee_agent.protocol.errors import RejectedError
from cooee_agent.protocol.schema import canonical, convert, fail, integer, text

SCHEMA_VERSION: Literal[1] = 1
TOKEN_VERSION = 1  # the token format version the Leader issues
MAX_SLOTS = MAX_GPU_SLOT + 1
MAX_AGENTS = 512
STATES = ("available", "busy", "draining", "degraded")
SEVERITIES = ("info", "warning", "critical")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

Nonce = Annotated[str, text(32, "[0-9a-f]{32}")]
# [0-9], not \d: Python's \d also matches other scripts' digits, which int() reads.
Time = Annotated[str, text(20, "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")]
KeyHex = Annotated[str, text(64, "[0-9a-f]{64}")]
Ed25519Key = Annotated[str, text(43, "[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")]
AgeRecipient = Annotated[str, text(62, "age1[02-9ac-hj-np-z]{58}")]
AgeSecret = Annotated[str, text(74, "AGE-SECRET-KEY-1[02-9AC-HJ-NP-Z]{58}")]
Token = Annotated[str, text(5, "[0-9A-HJKMNP-TV-Z]{5}")]
Mac = Annotated[str, text(12, "[0-9a-f]{12}")]
Hostname = Annotated[str, text(253)]
Code = Annotated[str, text(64, "[a-z0-9][a-z0-9-]*")]
Text = Annotated[str, text(255)]
LongText = Annotated[str, text(1024)]
OptText = Annotated[str, text(255, min_length=0)]
Slot = Annotated[int, integer(0, MAX_GPU_SLOT)]
HostId = Annotated[int, integer(0, MAX_HOST_ID)]
Count = Annotated[int, integer()]
Model = Annotated[str, text(255)]
Vendor = Annotated[str, text(16, "[a-z][a-z0-9-]*")]
State = Literal["available", "busy", "draining", "degraded"]
Severity = Literal["info", "warning", "critical"]
# A join token: the one rule for it, applied by the Leader to an enrolment and by the agent to
# its configuration before writing it, so a host is never set up with a token the Leader refuses.
JOIN_TOKEN_MAX_LENGTH = 128
JoinToken = Annotated[str, text(JOIN_TOKEN_MAX_LENGTH)]


def join_token_problem(value: str) -> str | None:
    """What is wrong with ``value`` as a join token, or None: 1 to 128 characters of one line
    of printable text (no control, format or separator characters other than the space)."""
    if not 1 <= len(value) <= JOIN_TOKEN_MAX_LENGTH:
        return f"must be 1 to {JOIN_TOKEN_MAX_LENGTH} characters, got {len(value)}"
    if not value.isprintable():
        return "must be one line of printable characters"
    return None


class Record(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A wire record: a JSON object with exactly these fields."""

    def to_dict(self) -> dict[str, Any]:
        # Through JSON rather than to_builtins, which would keep tuples as tuples: the dict is
        # what json.loads of this record gives, arrays as lists.
        value: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(self))
        return value

    def check(self) -> None:
        """The rules between fields that the types cannot say; RejectedError when one fails."""

    @classmethod
    def from_dict(cls, value: Any) -> Self:
        """``value`` (decoded JSON) as this type, with every rule checked."""
        record = convert(value, cls)
        record.check()
        return record


class FieldError(ValueError):
    """A record field broke a rule its type cannot say; raised from ``__post_init__``, so the
    refusal names the field inside the Struct (see ``schema.convert``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")


def check_time(value: str, field: str = "issued_at") -> None:
    try:
        parse_time(value)
    except ValueError:
        raise FieldError(
            field, f"{value!r} is not a valid UTC time of the form 2026-01-31T12:00:00Z"
        ) from None


def check_hostname(value: str, field: str = "hostname") -> None:
    try:
        canonical = normalise_hostname(value)
    except IdentityError as error:
        raise FieldError(field, str(error)) from None
    if canonical != value:
        raise FieldError(field, f"hostname {value!r} is not canonical ({canonical!r})")


def check_canonical(field: str, value: str, normalise: Callable[[str], str]) -> None:
    """Refuse a value that is not in its canonical form (docs/PROTOCOL.md section 2)."""
    try:
        canonical = normalise(value)
    except IdentityError as error:
        raise FieldError(field, str(error)) from None
    if canonical != value:
        raise FieldError(field, f"{value!r} is not canonical ({canonical!r})")


class AgentKey(Record, frozen=True, kw_only=True, forbid_unknown_fields=True):
    ed25519: Ed25519Key
    age: AgeRecipient


class HostEntry(Record, frozen=True, kw_only=True, forbid_unknown_fields=True):
    hostname: Hostname
    mac: Mac
    os: Annotated[str, text(32)]
    os_release: OptText
    arch: Annotated[str, text(32)]
    kernel: OptText

    def __post_init__(self) -> None:
        check_hostname(self.hostname)
        check_canonical("mac", self.mac, normalise_mac)


class SlotEntry(Record, frozen=True, kw_only=True, forbid_unknown_fields=True):
    slot: Slot
    gpu_id: Text
    vendor: Vendor
    name: OptText
    memory_total: Count | None

    def __post_init__(self) -> None:
        complaint = gpu_ids.vendor_complaint(self.vendor)
        if complaint:
            raise FieldError("vendor", complaint)
        check_canonical("gpu_id", self.gpu_id, normalise_gpu_id)


class TupleFields(Record, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An agent tuple as the record carries it; the Leader checks that it is canonical."""

    gpu_id: Text
    hostname: Hostname
    mac: Mac
    model: Model

    @classmethod
    def of(cls, agent: AgentTuple) -> TupleFields:
        return cls(gpu_id=agent.gpu_id, hostname=agent.hostname, mac=agent.mac, model=agent.model)


class AgentEntry(Record, frozen=True, kw_only=True, forbid_unknown_fields=True):
    slot: Slot
    key: KeyHex
    tuple: TupleFields

    @classmethod
    def of(cls, slot: int, agent: AgentTuple) -> AgentEntry:
        return cls(slot=slot, key=agent.key, tuple=TupleFields.of(agent))


class _EnrolmentHead(Record, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every field of an enrolment but its agents: EnrolmentRecord's and UsualEnrolment's."""

    schema: Literal[1] = 1
    kind: Literal["enrolment"] = "enrolment"
    nonce: Nonce
    issued_at: Time
    software: Annotated[str, text(64)]
    join_token: JoinToken | None
    agent_key: AgentKey
    host: HostEntry
    slots: Annotated[tuple[SlotEntry, ...], msgspec.Meta(min_length=1, max_length=MAX_SLOTS)]


class EnrolmentRecord(_EnrolmentHead, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a host says about itself; signed by its agent key, sealed to the Leader."""

    agents: Annotated[tuple[AgentEntry, ...], msgspec.Meta(max_length=MAX_AGENTS)]

    def __post_init__(self) -> None:
        check_time(self.issued_at)
        if self.join_token is not None and (problem := join_token_problem(self.join_token)):
            raise FieldError("join_token", problem)

    @property
    def agent_ed25519(self) -> str:
        """base64url of the agent's raw 32-byte verify key"""
        return self.agent_key.ed25519

    @property
    def agent_age(self) -> str:
        """the age recipient the assignment is sealed to"""
        return self.agent_key.age

    @classmethod
    def from_dict(cls, value: Any) -> EnrolmentRecord:
        """Check the types and every cross-field rule (canonical tuples, recomputed keys)."""
        record = convert(check_header(value, "enrolment"), cls)
        record.check()
        return record

    def check(self) -> None:
        if len({s.slot for s in self.slots}) != len(self.slots):
            raise fail("slots", "names a slot twice")
        gpu_of_slot = {s.slot: s.gpu_id for s in self.slots}
        host = (self.host.hostname, self.host.mac)
        # A record repeats a few values in many tuples: each distinct one is checked once, and
        # those its host and slots were found canonical with (their own checks) not again.
        canonical_values = {("hostname", host[0]), ("mac", host[1])}
        canonical_values.update(("gpu_id", gpu_id) for gpu_id in gpu_of_slot.values())
        for index, entry in enumerate(self.agents):
            fields = entry.tuple
            # The usual tuple names its record's host, its slot's GPU and a model already found
            # canonical: every rule but its key holds. Any other goes through them in order.
            if not (
                ("model", fields.model) in canonical_values
                and fields.hostname == host[0]
                and fields.mac == host[1]
                and gpu_of_slot.get(entry.slot) == fields.gpu_id
            ):
                _check_tuple(index, entry, host, gpu_of_slot, canonical_values)
            # The fields are canonical, so their key is the canonical tuple's: the SHA-256 of
            # their canonical JSON, which is the canonical encoding of these four fields.
            if hashlib.sha256(canonical(fields)).hexdigest() != entry.key:
                raise RejectedError(
                    "key-mismatch", f"agents[{index}].key is not the SHA-256 of its canonical tuple"
                )
        if len({a.key for a in self.agents}) != len(self.agents):
            raise fail("agents", "lists an agent twice")


class _UsualTuple(Record, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """TupleFields without the patterns and bounds its hostname, mac and gpu_id hold by being
    equal to their host's and slot's (checked there); the model keeps its own."""

    gpu_id: str
    hostname: str
    mac: str
    model: Model


class _UsualAgent(Record, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """AgentEntry without the key's pattern (checked in one pass over all keys) and the slot's
    bounds (a usual agent's slot is one of the record's)."""

    slot: int
    key: str
    tuple: _UsualTuple


class UsualEnrolment(_EnrolmentHead, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """EnrolmentRecord as the Leader decodes it first: its agents without the two patterns
    each (64 regular expression matches at 32 agents, 36 us of an 80 us decode) that a usual
    agent holds by construction. :func:`usual_enrolment` makes the record from it, or says it
    must be decoded as an EnrolmentRecord. Every field but ``agents`` is EnrolmentRecord's."""

    agents: Annotated[tuple[_UsualAgent, ...], msgspec.Meta(max_length=MAX_AGENTS)]


_HEX_DIGITS = b"0123456789abcdef"


def usual_enrolment(decoded: UsualEnrolment) -> EnrolmentRecord | None:
    """The EnrolmentRecord that decoding the same JSON as an EnrolmentRecord gives, when every
    agent is usual: its tuple names the record's host and its slot's GPU, and its key is 64
    hex digits (so every pattern and bound of AgentEntry holds). None otherwise, or when the
    record's own field checks refuse it: decode it as an EnrolmentRecord, which says why.

    Every valid record's agents are usual (``check`` refuses any other), so only a refused
    record is decoded twice."""
    host = decoded.host
    hostname, mac = host.hostname, host.mac
    gpu_of_slot = {s.slot: s.gpu_id for s in decoded.slots}
    agents = []
    for agent in decoded.agents:
        fields = agent.tuple
        if not (
            fields.hostname == hostname
            and fields.mac == mac
            and gpu_of_slot.get(agent.slot) == fields.gpu_id
            and len(agent.key) == 64
        ):
            return None
        agents.append(
            AgentEntry(
                slot=agent.slot,
                key=agent.key,
                tuple=TupleFields(
                    gpu_id=fields.gpu_id, hostname=hostname, mac=mac, model=fields.model
                ),
            )
        )
    keys = "".join(agent.key for agent in decoded.agents)
    if not keys.isascii() or keys.encode("ascii").translate(None, _HEX_DIGITS):
        return None
    try:
        return EnrolmentRecord(
            nonce=decoded.nonce,
            issued_at=decoded.issued_at,
            software=decoded.software,
            join_token=decoded.join_token,
            agent_key=decoded.agent_key,
            host=host,
            slots=decoded.slots,
            agents=tuple(agents),
        )
    except FieldError:
        return None


def _check_tuple(
    index: int,
    entry: AgentEntry,
    host: tuple[str, str],
    gpu_of_slot: dict[int, str],
    canonical_values: set[tuple[str, str]],
) -> None:
    """Every rule of one agent tuple but its key, in order; adds the values found canonical."""
    fields = entry.tuple
    for field, value in (
        ("model", fields.model),
        ("hostname", fields.hostname),
        ("mac", fields.mac),
        ("gpu_id", fields.gpu_id),
    ):
        if (field, value) not in canonical_values:
            _check_canonical(f"agents[{index}].tuple", fields, field, value)
            canonical_values.add((field, value))
    if (fields.hostname, fields.mac) != host:
        raise RejectedError(
            "key-mismatch", f"agents[{index}].tuple names another host than the record's host"
        )
    if entry.slot not in gpu_of_slot:
        raise fail(f"agents[{index}].slot", f"slot {entry.slot} is not among the record's slots")
    if gpu_of_slot[entry.slot] != fields.gpu_id:
        raise RejectedError(
            "key-mismatch", f"agents[{index}].tuple.gpu_id is not the gpu_id of slot {entry.slot}"
        )


_NORMALISERS: dict[str, Callable[[str], str]] = {
    "model": normalise_model,
    "hostname": normalise_hostname,
    "mac": normalise_mac,
    "gpu_id": normalise_gpu_id,
}


def _check_canonical(path: str, fields: TupleFields, field: str, value: str) -> None:
    """Refuse a tuple whose ``field`` is not in its canonical form, showing the canonical tuple."""
    try:
        normalised = _NORMALISERS[field](value)
        if normalised == value:
            return
        shown = {name: _NORMALISERS[name](getattr(fields, name)) for name in sorted(_NORMALISERS)}
    except IdentityError as error:
        raise fail(path, str(error)) from error
    raise fail(path, f"is not canonical (canonical: {shown})")


class SlotToken(Record, frozen=True, kw_only=True, forbid_unknown_fields=True):
    slot: Slot
    gpu_id: Text
    token: Token


class SlotLike(Protocol):
    @property
    def slot(self) -> int: ...
    @property
    def gpu_id(self) -> str: ...


def slot_tokens(host_id: int, slots: Iterable[SlotLike]) -> tuple[SlotToken, ...]:
    """The token of each of host ``host_id``'s slots, in their order: a token is its host_id
    and slot (docs/PROTOCOL.md section 1), so the Leader keeps none of them."""
    from cooee_agent.identity import token as codec

    return tuple(
        SlotToken(slot=s.slot, gpu_id=s.gpu_id, token=codec.encode(TOKEN_VERSION, host_id, s.slot))
        for s in slots
    )


class Assignment(Record, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The Leader's answer: the host's host_id and one token per GPU slot; signed by the Leader."""

    schema: Literal[1] = 1
    kind: Literal["assignment"] = "assignment"
    nonce: Nonce
    issued_at: Time
    enrolment_nonce: Nonce  # the enrolment this answers, so the agent can retire it
    agent_key: Ed25519Key
    host_id: HostId
    hostname: Hostname
    mac: Mac
    slots: Annotated[tuple[SlotToken, ...], msgspec.Meta(min_length=1, max_length=MAX_SLOTS)]
    # The cluster's read key for the DHT's host records (host_records.py), present only when
    # the Leader runs the DHT. Absent, the record encodes exactly as before the field existed,
    # so an agent that predates it still takes it (docs/PROTOCOL.md section 11, version skew).
    read_key: AgeSecret | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        check_time(self.issued_at)
        check_hostname(self.hostname)

    def __repr__(self) -> str:
        # The read key is a secret: never in a log line or a traceback.
        shown = "<set>" if self.has_read_key else "<unset>"
        return f"Assignment(host_id={self.host_id}, hostname={self.hostname!r}, read_key={shown})"

    @property
    def has_read_key(self) -> bool:
        return not isinstance(self.read_key, msgspec.UnsetType)

    @classmethod
    def from_dict(cls, value: Any) -> Assignment:
        assignment = convert(check_header(value, "assignment"), cls)
        assignment.check()
        return assignment

    def check(self) -> None:
        from cooee_agent.identity import token as codec

        for index, entry in enumerate(self.slots):
            expected = codec.encode(TOKEN_VERSION, self.host_id, entry.slot)
            if entry.token != expected:
                raise fail(f"slots[{index}].token", "is not the token of its host_id and slot")
        if len({s.slot for s in self.slots}) != len(self.slots):
            raise fail("slots", "names a slot twice")


class SlotAvailability(Record, frozen=True, kw_only=True, forbid_unknown_fields=True):
    slot: Slot
    token: Token
    state: State
    memory_total: Count | None
    memory_free: Count | None
    utilisation: Annotated[int, integer(0, 100)] | None
    models_installed: Annotated[tuple[Model, ...], msgspec.Meta(max_length=256)]
    models_loaded: Annotated[tuple[Model, ...], msgspec.Meta(max_length=64)]


class Availability(Record, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A heartbeat: the host's slots, their state and models; signed, not sealed."""

    schema: Literal[1] = 1
    kind: Literal["availability"] = "availability"
    host_id: HostId
    seq: Count
    issued_at: Time
    interval_s: Annotated[int, integer(1, 86400)]
    slots: Annotated[tuple[SlotAvailability, ...], msgspec.Meta(min_length=1, max_length=MAX_SLOTS)]

    def __post_init__(self) -> None:
        check_time(self.issued_at)


class Intervention(Record, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A call for a human, from an agent (or raised by the Leader itself)."""

    schema: Literal[1] = 1
    kind: Literal["intervention"] = "intervention"
    nonce: Nonce
    issued_at: Time
    host_id: HostId | None
    hostname: Hostname
    severity: Severity
    reason: Code
    detail: LongText

    def __post_init__(self) -> None:
        check_time(self.issued_at)
        check_hostname(self.hostname)


class Leaving(Record, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A host says it is going away (shutdown, uninstall) so it is not reported as lost."""

    schema: Literal[1] = 1
    kind: Literal["leaving"] = "leaving"
    host_id: HostId
    seq: Count
    issued_at: Time
    reason: Code

    def __post_init__(self) -> None:
        check_time(self.issued_at)


def check_header(value: Any, expected_kind: str | None = None) -> dict[str, Any]:
    """The checks before a record's type is known: an object, of a known kind and version."""
    from cooee_agent.protocol.kinds import KINDS

    if not isinstance(value, dict):
        raise fail("record", "must be an object")
    kind = value.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise fail("kind", f"{kind!r} is not a record kind ({', '.join(KINDS)})")
    if expected_kind is not None and kind != expected_kind:
        raise fail("kind", f"is {kind!r} where {expected_kind!r} was expected")
    version = value.get("schema")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise fail("schema", f"version {version!r} is not supported (this reads {SCHEMA_VERSION})")
    return value


def validate_record(value: Any, expected_kind: str | None = None) -> dict[str, Any]:
    """Check a decoded record against the type of its kind and that type's cross-field rules;
    returns it, or raises RejectedError."""
    from cooee_agent.protocol.kinds import KINDS

    kind = check_header(value, expected_kind)["kind"]
    convert(value, KINDS[kind].record).check()
    return value


def issued_token(text: str) -> DecodedToken:
    """Decode ``text`` as a token this protocol issues: a valid token (``identity.token``) of
    TOKEN_VERSION with its reserved bits clear. Anything else names no agent; TokenError says
    why."""
    decoded = decode_token(text)
    if decoded.version != TOKEN_VERSION or decoded.reserved != 0:
        raise TokenError(
            f"token {decoded.text} is version {decoded.version} with reserved bits "
            f"{decoded.reserved}; Leaders issue only version {TOKEN_VERSION} with reserved 0, "
            "so it names no agent"
        )
    return decoded


def new_nonce() -> str:
    """128 random bits as 32 lower-case hex digits."""
    return secrets.token_hex(16)


def now_text(moment: datetime | None = None) -> str:
    """``moment`` (default: now) as a protocol time, TIME_FORMAT in UTC."""
    # Formatted by hand: strftime took 7 us, and the Leader writes several times per message.
    at = (moment or datetime.now(UTC)).astimezone(UTC)
    return (
        f"{at.year:04d}-{at.month:02d}-{at.day:02d}T{at.hour:02d}:{at.minute:02d}:{at.second:02d}Z"
    )


_TIME = re.compile("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def parse_time(text: str) -> datetime:
    """The moment a protocol time names; ValueError unless it is exactly TIME_FORMAT.

    The pattern holds the form (ASCII digits only); ``fromisoformat`` reads it, refusing a
    moment that does not exist as ``datetime`` does. Not strptime, which costs thirty times
    more: the Leader parses six times per enrolment.
    """
    if _TIME.fullmatch(text) is None:
        raise ValueError(f"time data {text!r} does not match format {TIME_FORMAT!r}")
    return datetime.fromisoformat(text)
