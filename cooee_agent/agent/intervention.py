"""Calls for human intervention: build, sign and queue them in the outbox for the daemon to send.

Retirement: the Leader does not acknowledge a call, so an intervention item leaves the outbox
after its first publish while at least one peer had joined ``cooee/intervention/v1`` (gossipsub
then hands it to that peer, which relays it). Until then it stays queued with the outbox's
backoff, across restarts. A queued call older than half the freshness window is re-signed with
a fresh ``issued_at`` (same nonce) so receivers do not refuse it as stale; receivers dedupe on
the nonce.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

from cooee_agent.bus.outbox import Outbox
from cooee_agent.errors import InputError
from cooee_agent.protocol.keys import AgentKeys
from cooee_agent.protocol.kinds import topic_of
from cooee_agent.protocol.records import SCHEMA_VERSION, new_nonce, now_text
from cooee_agent.protocol.sealing import seal_plain

log = logging.getLogger(__name__)

KEY_PREFIX = "intervention:"
MAX_DETAIL = 1024
_CODE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


def reason_code(text: str) -> str:
    """A free-text reason as the record's code (``[a-z0-9][a-z0-9-]*``, at most 64)."""
    code = re.sub(r"[^a-z0-9]+", "-", text.strip().lower()).strip("-")[:64].strip("-")
    return code or "operator"


def intervention_record(
    *,
    hostname: str,
    host_id: int | None,
    reason: str,
    detail: str,
    severity: str = "warning",
    nonce: str | None = None,
    issued_at: datetime | None = None,
) -> dict[str, Any]:
    if not _CODE.fullmatch(reason):
        raise InputError(f"intervention reason {reason!r} is not a code like gpu-lost")
    detail = " ".join(detail.split())[:MAX_DETAIL] or reason
    return {
        "schema": SCHEMA_VERSION,
        "kind": "intervention",
        "nonce": nonce or new_nonce(),
        "issued_at": now_text(issued_at),
        "host_id": host_id,
        "hostname": hostname,
        "severity": severity,
        "reason": reason,
        "detail": detail,
    }


def queue_intervention(outbox: Outbox, keys: AgentKeys, record: dict[str, Any]) -> str:
    """Sign ``record`` and store it in the outbox (due now); returns the outbox key."""
    data = seal_plain(record, keys.signing, keys.agent_id)
    key = KEY_PREFIX + record["nonce"]
    outbox.put(key, topic_of("intervention"), data)
    log.info(
        "queued intervention call %s (%s): %s",
        record["reason"],
        record["severity"],
        record["detail"],
        extra={"COOEE_INTERVENTION": record["reason"]},
    )
    return key


def refreshed(data: bytes, keys: AgentKeys) -> bytes:
    """The same call (same nonce) signed again with fresh times."""
    import json

    envelope = json.loads(data)
    record = dict(envelope["body"])
    record["issued_at"] = now_text()
    return seal_plain(record, keys.signing, keys.agent_id)
