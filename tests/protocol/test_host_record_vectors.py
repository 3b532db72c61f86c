"""The host-record vectors published in docs/PROTOCOL.md (section 11) hold for this code."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pyrage import x25519

from cooee_agent.protocol import b64
from cooee_agent.protocol.errors import RejectedError
from cooee_agent.protocol.host_records import (
    HOST_RECORD_CONTEXT,
    HostRecordRules,
    open_host_record,
    parse_host_record,
)
from cooee_agent.protocol.keys import raw_public, verify_signature
from cooee_agent.protocol.schema import canonical, loads

Vectors = Callable[[str], list[str]]
BEFORE_EXPIRY = datetime(2026, 12, 1, 0, 30, 0, tzinfo=UTC)


@pytest.fixture
def vector(protocol_vectors: Vectors) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in protocol_vectors("host-record"))


def rules(vector: dict[str, str], read_key: str | None = None) -> HostRecordRules:
    return HostRecordRules(
        trusted={b64.decode(vector["leader-ed25519-public"], 32)},
        read_key=read_key or vector["read-key-recipient"],
        clock=lambda: BEFORE_EXPIRY,
    )


def test_the_published_keys_belong_together(vector: dict[str, str]) -> None:
    leader = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vector["leader-ed25519-seed"]))
    assert b64.encode(raw_public(leader)) == vector["leader-ed25519-public"]
    read = x25519.Identity.from_str(vector["read-key"])
    assert str(read.to_public()) == vector["read-key-recipient"]


def test_the_published_record_checks_and_opens_to_the_published_host_info(
    vector: dict[str, str],
) -> None:
    data = vector["host-record"].encode("utf-8")
    assert canonical(loads(data, "vector")) == data  # the value is canonical JSON
    record = rules(vector).check(vector["key"], data)
    unsigned = {k: v for k, v in loads(data, "vector").items() if k != "sig"}
    assert verify_signature(
        b64.decode(vector["leader-ed25519-public"], 32),
        b64.decode(record.sig, 64),
        HOST_RECORD_CONTEXT + canonical(unsigned),
    )
    info = open_host_record(record, [x25519.Identity.from_str(vector["read-key"])])
    assert canonical(info) == vector["host-info"].encode("utf-8")


def test_the_published_record_is_refused_after_its_expiry_and_under_another_read_key(
    vector: dict[str, str],
) -> None:
    data = vector["host-record"].encode("utf-8")
    late = rules(vector)
    late.clock = lambda: datetime(2026, 12, 1, 1, 0, 0, tzinfo=UTC)
    with pytest.raises(RejectedError, match="expired"):
        late.check(vector["key"], data)
    other = str(x25519.Identity.generate().to_public())
    with pytest.raises(RejectedError, match="another read key"):
        rules(vector, other).check(vector["key"], data)
    assert parse_host_record(data).key == vector["key"]
