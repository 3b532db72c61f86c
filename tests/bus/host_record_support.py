"""Host records for DHT tests: honest ones, forged ones and stale ones, sealed in one place."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cooee_agent.protocol.host_records import HostInfo, seal_host_record
from cooee_agent.protocol.records import now_text


def host_info(host_id: int, **fields: Any) -> HostInfo:
    """An active host's record body, issued now, with no key or slots unless given."""
    defaults: dict[str, Any] = {
        "seq": 1,
        "issued_at": now_text(),
        "status": "active",
        "hostname": f"gpu-{host_id:02d}",
        "mac": f"aabbccddee{host_id:02x}",
        "agent_key": None,
        "slots": (),
    }
    return HostInfo(host_id=host_id, **(defaults | fields))


def sealed(
    info: HostInfo,
    signer: Ed25519PrivateKey,
    read_key: str,
    *,
    expires_in: timedelta = timedelta(hours=1),
) -> bytes:
    """``info`` signed by ``signer`` and sealed to ``read_key``, expiring ``expires_in`` from now
    (in the past when negative)."""
    return seal_host_record(info, signer, read_key, expires_at=datetime.now(UTC) + expires_in)
