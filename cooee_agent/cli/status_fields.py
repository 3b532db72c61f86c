"""The fields of status.json that ``cooee-agent status`` reads, each checked for its type.

status.json is the daemon's, but anything may have written it (an older release, a hand, a
full disk cutting it short). A field of the wrong type is dropped and named, so ``status``
shows what it can and says what it could not, instead of a traceback for a 23-digit pid or a
``updated_at`` that is a string.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

# The largest pid any kernel hands out (Linux allows at most 2**22); os.kill overflows past
# a C int, so nothing larger is ever passed to it.
MAX_PID = 2**31 - 1


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return (_integer(value) or isinstance(value, float)) and math.isfinite(value)


def _text_or_none(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _int_or_none(value: Any) -> bool:
    return value is None or _integer(value)


def _pid(value: Any) -> bool:
    return _integer(value) and 0 < value <= MAX_PID


def _tokens(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(t, dict)
        and _integer(t.get("slot"))
        and isinstance(t.get("token"), str)
        and isinstance(t.get("gpu_id"), str)
        for t in value
    )


def _reasons(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(r, str) for r in value)


def _heartbeat(value: Any) -> bool:
    return value is None or (
        isinstance(value, dict)
        and isinstance(value.get("at"), str)
        and _integer(value.get("seq"))
        and isinstance(value.get("state", ""), str)
    )


def _counts(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and _integer(v) for k, v in value.items()
    )


CHECKS: dict[str, Callable[[Any], bool]] = {
    "pid": _pid,
    "running": lambda v: isinstance(v, bool),
    "updated_at": _number,
    "updated": _text_or_none,
    "enrolment": _text_or_none,
    "agent_id": _text_or_none,
    "peer_id": _text_or_none,
    "host_id": _int_or_none,
    "hostname": _text_or_none,
    "tokens": _tokens,
    "agents": _integer,
    "identity_error": _text_or_none,
    "state": _text_or_none,
    "reasons": _reasons,
    "peers": _integer,
    "mesh_repairs": _integer,
    "mesh_drops": _counts,
    "last_heartbeat": _heartbeat,
    "heartbeat_interval_s": _number,
    "outbox_depth": _int_or_none,
}


def checked(status: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``status`` without its ill-typed fields, and the names of those dropped."""
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for name, value in status.items():
        check = CHECKS.get(name)
        if check is not None and not check(value):
            dropped.append(name)
        else:
            kept[name] = value
    return kept, dropped
