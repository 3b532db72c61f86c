"""UCXL addresses: ``ucxl://agent:role@project:task/temporal/path``, parsed and formatted exactly.

Field grammar follows the CHORUS parser (names ``[A-Za-z0-9_-]+`` or ``any``; path
``[A-Za-z0-9_./-]*``). The temporal segment accepts the CHORUS forms (``*^``, ``*~``, ``*~N``,
``~~N``, ``^^N``), ISO-8601 timestamps, and ``#`` — this product's "current, unversioned"
marker used by the enrol address. ``format(parse(s)) == s`` for every accepted ``s``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from cooee_agent.errors import AddressError
from cooee_agent.identity.quoting import quoted

SCHEME = "ucxl://"
WILDCARD = "any"

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_PATH = re.compile(r"^[A-Za-z0-9_./-]*$")
_VERSIONED = re.compile(r"^(\*~|~~|\^\^)(0|[1-9][0-9]{0,9})$")
_ISO_8601 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$")
_KEYWORDS = ("#", "*^", "*~")


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed UCXL address; ``str(address)`` gives back the exact text."""

    agent: str
    role: str
    project: str
    task: str
    temporal: str
    path: str = ""

    def __post_init__(self) -> None:
        for field in ("agent", "role", "project", "task"):
            _check_name(field, getattr(self, field))
        _check_temporal(self.temporal)
        _check_path(self.path)

    def __str__(self) -> str:
        return format_address(self)


def _check_name(field: str, value: str) -> None:
    if not value:
        raise AddressError(f"UCXL {field} is empty")
    if not _NAME.match(value):
        bad = next((c for c in value if not re.match(r"[A-Za-z0-9_-]", c)), value[0])
        raise AddressError(
            f"UCXL {field} {quoted(value)} has {bad!r}; allowed are letters, digits, '_' and '-'"
        )


def _check_temporal(value: str) -> None:
    if value in _KEYWORDS or _VERSIONED.match(value):
        return
    if _ISO_8601.match(value):
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as error:
            raise AddressError(
                f"UCXL temporal segment {quoted(value)} is not a valid time: {error}"
            ) from error
        return
    if not value:
        raise AddressError("UCXL temporal segment is empty")
    raise AddressError(
        f"UCXL temporal segment {quoted(value)} is not one of '#', '*^', '*~', '*~N', '~~N', '^^N' "
        "or an ISO-8601 time with a zone (2026-11-25T16:00:00Z)"
    )


def _check_path(value: str) -> None:
    if not _PATH.match(value):
        bad = next(c for c in value if not re.match(r"[A-Za-z0-9_./-]", c))
        raise AddressError(
            f"UCXL path {quoted(value)} has {bad!r}; allowed "
            "are letters, digits, '_', '-', '.' and '/'"
        )
    if value and "" in value.split("/"):
        raise AddressError(
            f"UCXL path {quoted(value)} has an empty segment (a doubled or trailing '/')"
        )


def parse(text: str) -> Address:
    """Parse a UCXL address, naming the component that is wrong when it is malformed."""
    if not isinstance(text, str):
        raise AddressError(f"UCXL address must be a string, got {type(text).__name__}")
    if not text.startswith(SCHEME):
        raise AddressError(f"UCXL address {quoted(text)} does not start with {SCHEME!r}")
    rest = text[len(SCHEME) :]
    authority, slash, remainder = rest.partition("/")
    if not slash:
        raise AddressError(
            f"UCXL address {quoted(text)} has no temporal segment after the authority"
        )
    who, at, where = authority.partition("@")
    if not at:
        raise AddressError(
            f"UCXL address {quoted(text)} has no '@' between agent:role and project:task"
        )
    agent, colon, role = who.partition(":")
    if not colon:
        raise AddressError(f"UCXL address {quoted(text)} has no ':' between agent and role")
    project, colon, task = where.partition(":")
    if not colon:
        raise AddressError(f"UCXL address {quoted(text)} has no ':' between project and task")
    temporal, path_slash, path = remainder.partition("/")
    if path_slash and not path:
        raise AddressError(f"UCXL address {quoted(text)} ends in '/' with an empty path")
    return Address(agent=agent, role=role, project=project, task=task, temporal=temporal, path=path)


def format_address(address: Address) -> str:
    """The text form; the path is omitted (with its slash) when empty."""
    head = (
        f"{SCHEME}{address.agent}:{address.role}@{address.project}:{address.task}"
        f"/{address.temporal}"
    )
    return f"{head}/{address.path}" if address.path else head


def enrol_address(agent_id: str) -> Address:
    """The address an agent enrols at: ``ucxl://any:admin@COOEE:enrol/#/agentid/<id>``."""
    return Address("any", "admin", "COOEE", "enrol", "#", f"agentid/{agent_id}")
