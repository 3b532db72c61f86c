"""The five record kinds (enrolment, assignment, availability, intervention, leaving): schemas,
typed values for the two the enrolment exchange uses, and their semantic checks.

The schemas here are normative (docs/PROTOCOL.md section 5). A record is a JSON object whose
``schema`` and ``kind`` fields select its schema; anything else is refused with reason ``schema``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cooee_agent.errors import IdentityError
from cooee_agent.identity import gpu_ids
from cooee_agent.identity.canonical import AgentTuple, make_tuple, normalise_hostname
from cooee_agent.identity.token import MAX_GPU_SLOT, MAX_HOST_ID
from cooee_agent.protocol.errors import RejectedError
from cooee_agent.protocol.schema import Arr, Const, Int, Obj, Opt, Spec, Str, fail

SCHEMA_VERSION = 1
TOKEN_VERSION = 1  # the token format version the Leader issues
KINDS = ("enrolment", "assignment", "availability", "intervention", "leaving")
MAX_SLOTS = MAX_GPU_SLOT + 1
MAX_AGENTS = 512
STATES = ("available", "busy", "draining", "degraded")
SEVERITIES = ("info", "warning", "critical")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def _check_time(value: str) -> str | None:
    try:
        datetime.strptime(value, TIME_FORMAT)
    except ValueError:
        return f"{value!r} is not a valid UTC time of the form 2026-01-31T12:00:00Z"
    return None


def _check_hostname(value: str) -> str | None:
    try:
        canonical = normalise_hostname(value)
    except IdentityError as error:
        return str(error)
    return None if canonical == value else f"hostname {value!r} is not canonical ({canonical!r})"


NONCE = Str(32, re.compile(r"[0-9a-f]{32}"))
TIME = Str(20, re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z"), check=_check_time)
KEY_HEX = Str(64, re.compile(r"[0-9a-f]{64}"))
ED25519 = Str(43, re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]"))
AGE_RECIPIENT = Str(62, re.compile(r"age1[02-9ac-hj-np-z]{58}"))
TOKEN = Str(5, re.compile(r"[0-9A-HJKMNP-TV-Z]{5}"))
MAC = Str(12, re.compile(r"[0-9a-f]{12}"))
HOSTNAME = Str(253, check=_check_hostname)
CODE = Str(64, re.compile(r"[a-z0-9][a-z0-9-]*"))
TEXT = Str(255)
LONG_TEXT = Str(1024)
OPT_TEXT = Str(255, allow_empty=True)
SLOT = Int(0, MAX_GPU_SLOT)
HOST_ID = Int(0, MAX_HOST_ID)
COUNT = Int()
MODEL = Str(255)


def _header(kind: str) -> dict[str, Spec]:
    return {"schema": Const(SCHEMA_VERSION), "kind": Const(kind)}


TUPLE = Obj({"gpu_id": TEXT, "hostname": HOSTNAME, "mac": MAC, "model": MODEL})

SCHEMAS: dict[str, Obj] = {
    "enrolment": Obj(
        {
            **_header("enrolment"),
            "nonce": NONCE,
            "issued_at": TIME,
            "software": Str(64),
            "join_token": Opt(Str(128)),
            "agent_key": Obj({"ed25519": ED25519, "age": AGE_RECIPIENT}),
            "host": Obj(
                {
                    "hostname": HOSTNAME,
                    "mac": MAC,
                    "os": Str(32),
                    "os_release": OPT_TEXT,
                    "arch": Str(32),
                    "kernel": OPT_TEXT,
                }
            ),
            "slots": Arr(
                Obj(
                    {
                        "slot": SLOT,
                        "gpu_id": TEXT,
                        "vendor": Str(16, check=gpu_ids.vendor_complaint),
                        "name": OPT_TEXT,
                        "memory_total": Opt(COUNT),
                    }
                ),
                MAX_SLOTS,
                1,
            ),
            "agents": Arr(Obj({"slot": SLOT, "key": KEY_HEX, "tuple": TUPLE}), MAX_AGENTS),
        }
    ),
    "assignment": Obj(
        {
            **_header("assignment"),
            "nonce": NONCE,
            "issued_at": TIME,
            "enrolment_nonce": NONCE,
            "agent_key": ED25519,
            "host_id": HOST_ID,
            "hostname": HOSTNAME,
            "mac": MAC,
            "slots": Arr(Obj({"slot": SLOT, "gpu_id": TEXT, "token": TOKEN}), MAX_SLOTS, 1),
        }
    ),
    "availability": Obj(
        {
            **_header("availability"),
            "host_id": HOST_ID,
            "seq": COUNT,
            "issued_at": TIME,
            "interval_s": Int(1, 86400),
            "slots": Arr(
                Obj(
                    {
                        "slot": SLOT,
                        "token": TOKEN,
                        "state": Str(16, choices=STATES),
                        "memory_total": Opt(COUNT),
                        "memory_free": Opt(COUNT),
                        "utilisation": Opt(Int(0, 100)),
                        "models_installed": Arr(MODEL, 256),
                        "models_loaded": Arr(MODEL, 64),
                    }
                ),
                MAX_SLOTS,
                1,
            ),
        }
    ),
    "intervention": Obj(
        {
            **_header("intervention"),
            "nonce": NONCE,
            "issued_at": TIME,
            "host_id": Opt(HOST_ID),
            "hostname": HOSTNAME,
            "severity": Str(16, choices=SEVERITIES),
            "reason": CODE,
            "detail": LONG_TEXT,
        }
    ),
    "leaving": Obj(
        {
            **_header("leaving"),
            "host_id": HOST_ID,
            "seq": COUNT,
            "issued_at": TIME,
            "reason": CODE,
        }
    ),
}


def validate_record(value: Any, expected_kind: str | None = None) -> dict[str, Any]:
    """Check a decoded record against its schema; returns it, or raises RejectedError."""
    if not isinstance(value, dict):
        raise fail("record", "must be an object")
    kind = value.get("kind")
    if kind not in KINDS:
        raise fail("kind", f"{kind!r} is not a record kind ({', '.join(KINDS)})")
    if expected_kind is not None and kind != expected_kind:
        raise fail("kind", f"is {kind!r} where {expected_kind!r} was expected")
    version = value.get("schema")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise fail("schema", f"version {version!r} is not supported (this reads {SCHEMA_VERSION})")
    SCHEMAS[kind].validate(value, "")
    return value


@dataclass(frozen=True, slots=True)
class SlotEntry:
    slot: int
    gpu_id: str
    vendor: str
    name: str
    memory_total: int | None


@dataclass(frozen=True, slots=True)
class AgentEntry:
    slot: int
    tuple: AgentTuple
    key: str


@dataclass(frozen=True, slots=True)
class HostEntry:
    hostname: str
    mac: str
    os: str
    os_release: str
    arch: str
    kernel: str


@dataclass(frozen=True, slots=True)
class EnrolmentRecord:
    """What a host says about itself; signed by its agent key, sealed to the Leader."""

    nonce: str
    issued_at: str
    software: str
    agent_ed25519: str  # base64url of the raw 32-byte verify key
    agent_age: str  # the age recipient the assignment is sealed to
    host: HostEntry
    slots: tuple[SlotEntry, ...]
    agents: tuple[AgentEntry, ...]
    join_token: str | None = None

    kind = "enrolment"

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "kind": "enrolment",
            "nonce": self.nonce,
            "issued_at": self.issued_at,
            "software": self.software,
            "join_token": self.join_token,
            "agent_key": {"ed25519": self.agent_ed25519, "age": self.agent_age},
            "host": {
                "hostname": self.host.hostname,
                "mac": self.host.mac,
                "os": self.host.os,
                "os_release": self.host.os_release,
                "arch": self.host.arch,
                "kernel": self.host.kernel,
            },
            "slots": [
                {
                    "slot": s.slot,
                    "gpu_id": s.gpu_id,
                    "vendor": s.vendor,
                    "name": s.name,
                    "memory_total": s.memory_total,
                }
                for s in self.slots
            ],
            "agents": [
                {
                    "slot": a.slot,
                    "key": a.key,
                    "tuple": {
                        "gpu_id": a.tuple.gpu_id,
                        "hostname": a.tuple.hostname,
                        "mac": a.tuple.mac,
                        "model": a.tuple.model,
                    },
                }
                for a in self.agents
            ],
        }

    @classmethod
    def from_dict(cls, value: Any) -> EnrolmentRecord:
        """Validate the schema and every cross-field rule (canonical tuples, recomputed keys)."""
        data = validate_record(value, "enrolment")
        host = HostEntry(**data["host"])
        slots = tuple(SlotEntry(**entry) for entry in data["slots"])
        if len({s.slot for s in slots}) != len(slots):
            raise fail("slots", "names a slot twice")
        gpu_of_slot = {s.slot: s.gpu_id for s in slots}
        agents = []
        for index, entry in enumerate(data["agents"]):
            path = f"agents[{index}]"
            fields = entry["tuple"]
            try:
                agent = make_tuple(**fields)
            except IdentityError as error:
                raise fail(f"{path}.tuple", str(error)) from error
            if _tuple_dict(agent) != fields:
                raise fail(f"{path}.tuple", f"is not canonical (canonical: {_tuple_dict(agent)})")
            if (agent.hostname, agent.mac) != (host.hostname, host.mac):
                raise RejectedError(
                    "key-mismatch", f"{path}.tuple names another host than the record's host"
                )
            if entry["slot"] not in gpu_of_slot:
                raise fail(f"{path}.slot", f"slot {entry['slot']} is not among the record's slots")
            if gpu_of_slot[entry["slot"]] != agent.gpu_id:
                raise RejectedError(
                    "key-mismatch", f"{path}.tuple.gpu_id is not the gpu_id of slot {entry['slot']}"
                )
            if agent.key != entry["key"]:
                raise RejectedError(
                    "key-mismatch", f"{path}.key is not the SHA-256 of its canonical tuple"
                )
            agents.append(AgentEntry(slot=entry["slot"], tuple=agent, key=entry["key"]))
        if len({a.key for a in agents}) != len(agents):
            raise fail("agents", "lists an agent twice")
        return cls(
            nonce=data["nonce"],
            issued_at=data["issued_at"],
            software=data["software"],
            agent_ed25519=data["agent_key"]["ed25519"],
            agent_age=data["agent_key"]["age"],
            host=host,
            slots=slots,
            agents=tuple(agents),
            join_token=data["join_token"],
        )


def _tuple_dict(agent: AgentTuple) -> dict[str, str]:
    return {
        "gpu_id": agent.gpu_id,
        "hostname": agent.hostname,
        "mac": agent.mac,
        "model": agent.model,
    }


@dataclass(frozen=True, slots=True)
class SlotToken:
    slot: int
    gpu_id: str
    token: str


@dataclass(frozen=True, slots=True)
class Assignment:
    """The Leader's answer: the host's host_id and one token per GPU slot; signed by the Leader."""

    nonce: str
    issued_at: str
    enrolment_nonce: str  # the enrolment this answers, so the agent can retire it from its outbox
    agent_key: str
    host_id: int
    hostname: str
    mac: str
    slots: tuple[SlotToken, ...]

    kind = "assignment"

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "kind": "assignment",
            "nonce": self.nonce,
            "issued_at": self.issued_at,
            "enrolment_nonce": self.enrolment_nonce,
            "agent_key": self.agent_key,
            "host_id": self.host_id,
            "hostname": self.hostname,
            "mac": self.mac,
            "slots": [{"slot": s.slot, "gpu_id": s.gpu_id, "token": s.token} for s in self.slots],
        }

    @classmethod
    def from_dict(cls, value: Any) -> Assignment:
        from cooee_agent.identity import token as codec

        data = validate_record(value, "assignment")
        slots = tuple(SlotToken(**entry) for entry in data["slots"])
        for index, entry in enumerate(slots):
            expected = codec.encode(TOKEN_VERSION, data["host_id"], entry.slot)
            if entry.token != expected:
                raise fail(f"slots[{index}].token", "is not the token of its host_id and slot")
        if len({s.slot for s in slots}) != len(slots):
            raise fail("slots", "names a slot twice")
        return cls(**{**{k: data[k] for k in data if k not in ("schema", "kind")}, "slots": slots})


def now_text(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)
