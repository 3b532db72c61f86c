"""The DHT host record: sealing, opening, and the validator rules every node applies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from pyrage import x25519

from cooee_agent.identity import token as codec
from cooee_agent.identity.canonical import make_tuple
from cooee_agent.protocol import b64
from cooee_agent.protocol.errors import RejectedError
from cooee_agent.protocol.host_records import (
    MAX_LIFETIME_S,
    HostInfo,
    HostRecordRules,
    SlotTuples,
    host_id_of_key,
    host_key,
    open_host_record,
    parse_host_record,
    seal_host_record,
)
from cooee_agent.protocol.keys import raw_public
from cooee_agent.protocol.records import Assignment, SlotToken, TupleFields, now_text
from cooee_agent.protocol.schema import canonical, loads

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
LEADER = Ed25519PrivateKey.generate()
READ = x25519.Identity.generate()


def info(host_id: int = 7, seq: int = 1, status: str = "active") -> HostInfo:
    agent = make_tuple(model="llama3:8b", hostname="gpu-01", mac="aa:bb:cc:dd:ee:01", gpu_id="0")
    return HostInfo(
        host_id=host_id,
        seq=seq,
        issued_at=now_text(NOW),
        status=status,  # type: ignore[arg-type]
        hostname="gpu-01",
        mac="aabbccddee01",
        agent_key=b64.encode(raw_public(Ed25519PrivateKey.generate())),
        slots=(
            SlotTuples(
                slot=0,
                gpu_id=agent.gpu_id,
                token=codec.encode(1, host_id, 0),
                tuples=(TupleFields.of(agent),),
            ),
        ),
    )


def seal(
    record: HostInfo | None = None,
    *,
    key: Ed25519PrivateKey = LEADER,
    read: x25519.Identity = READ,
    expires_in: float = 3600,
) -> bytes:
    return seal_host_record(
        record or info(),
        key,
        str(read.to_public()),
        expires_at=NOW + timedelta(seconds=expires_in),
    )


def rules(read: x25519.Identity | None = READ) -> HostRecordRules:
    return HostRecordRules(
        trusted={raw_public(LEADER)},
        read_key=None if read is None else str(read.to_public()),
        clock=lambda: NOW,
    )


def test_a_sealed_record_checks_and_opens_to_what_was_sealed() -> None:
    value = seal()
    record = rules().check(host_key(7), value)
    opened = open_host_record(record, [READ])
    assert opened.hostname == "gpu-01"
    assert opened.slots[0].token == codec.encode(1, 7, 0)
    assert record.seq == 1 and record.read_key == str(READ.to_public())


def test_a_non_member_sees_ciphertext_only() -> None:
    value = seal()
    assert b"gpu-01" not in value and b"llama3" not in value
    with pytest.raises(RejectedError, match="does not open") as caught:
        open_host_record(parse_host_record(value), [x25519.Identity.generate()])
    assert caught.value.reason == "wrong-recipient"


def test_a_record_signed_by_another_key_is_refused() -> None:
    value = seal(key=Ed25519PrivateKey.generate())
    with pytest.raises(RejectedError, match="not signed by a trusted Leader key"):
        rules().check(host_key(7), value)


def test_a_record_with_a_lower_sequence_number_loses() -> None:
    older, newer = seal(info(seq=4)), seal(info(seq=5))
    assert rules().select(host_key(7), [older, newer]) == 1
    assert rules().select(host_key(7), [newer, older]) == 0


def test_an_invalid_record_loses_to_any_valid_one_whatever_its_sequence() -> None:
    forged = seal(info(seq=99), key=Ed25519PrivateKey.generate())
    assert rules().select(host_key(7), [forged, seal(info(seq=1))]) == 1


def test_an_expired_record_is_refused() -> None:
    with pytest.raises(RejectedError, match="expired") as caught:
        rules().check(host_key(7), seal(expires_in=-1))
    assert caught.value.reason == "stale"


def test_a_record_expiring_beyond_the_lifetime_bound_is_refused() -> None:
    rules().check(host_key(7), seal(expires_in=MAX_LIFETIME_S))
    with pytest.raises(RejectedError, match=f"more than {MAX_LIFETIME_S} s"):
        rules().check(host_key(7), seal(expires_in=MAX_LIFETIME_S + 1))


def test_a_record_sealed_to_an_old_read_key_is_refused() -> None:
    old = x25519.Identity.generate()
    with pytest.raises(RejectedError, match="another read key") as caught:
        rules().check(host_key(7), seal(read=old))
    assert caught.value.reason == "wrong-recipient"


def test_a_node_holding_only_the_old_read_key_cannot_open_new_records() -> None:
    old, new = x25519.Identity.generate(), x25519.Identity.generate()
    record = rules(read=None).check(host_key(7), seal(read=new))
    with pytest.raises(RejectedError, match="does not open"):
        open_host_record(record, [old])


def test_a_record_stored_under_another_hosts_key_is_refused() -> None:
    with pytest.raises(RejectedError, match="is for /cooee/host/7, not /cooee/host/8"):
        rules().check(host_key(8), seal())


def test_a_tampered_record_is_refused() -> None:
    value = loads(seal(), "test")
    value["seq"] = 2
    with pytest.raises(RejectedError, match="signature does not verify"):
        rules().check(host_key(7), canonical(value))


def test_sealed_info_that_disagrees_with_its_record_is_refused() -> None:
    # Signed by the Leader, but the inside names host 8: a Leader bug, never trusted.
    value = seal_host_record(
        info(host_id=8), LEADER, str(READ.to_public()), expires_at=NOW + timedelta(hours=1)
    )
    forged = loads(value, "test")
    forged["key"] = host_key(7)
    draft = {k: v for k, v in forged.items() if k != "sig"}
    from cooee_agent.protocol.host_records import HOST_RECORD_CONTEXT

    forged["sig"] = b64.encode(LEADER.sign(HOST_RECORD_CONTEXT + canonical(draft)))
    record = rules().check(host_key(7), canonical(forged))
    with pytest.raises(RejectedError, match="disagrees"):
        open_host_record(record, [READ])


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("/cooee/host/007", "canonical form"),
        ("/cooee/host/", "is not /cooee/host/<host_id>"),
        ("/cooee/host/1x", "is not /cooee/host/<host_id>"),
        ("/cooee/hosts/1", "is not /cooee/host/<host_id>"),
        ("/cooee/host/\u0661", "is not /cooee/host/<host_id>"),
    ],
)
def test_keys_are_refused_unless_canonical(key: str, why: str) -> None:
    with pytest.raises(RejectedError, match=why):
        host_id_of_key(key)


@given(st.integers(min_value=0, max_value=10**6))
def test_a_host_key_round_trips(host_id: int) -> None:
    assert host_id_of_key(host_key(host_id)) == host_id


@settings(max_examples=200)
@given(st.binary(max_size=512))
def test_garbage_is_refused_with_a_reason_never_a_crash(data: bytes) -> None:
    with pytest.raises(RejectedError):
        rules().check(host_key(7), data)


def test_an_assignment_without_a_read_key_encodes_as_before_the_field_existed() -> None:
    fields = {
        "nonce": "0" * 32,
        "issued_at": now_text(NOW),
        "enrolment_nonce": "1" * 32,
        "agent_key": b64.encode(raw_public(LEADER)),
        "host_id": 7,
        "hostname": "gpu-01",
        "mac": "aabbccddee01",
        "slots": (SlotToken(slot=0, gpu_id="0", token=codec.encode(1, 7, 0)),),
    }
    plain = Assignment(**fields)  # type: ignore[arg-type]
    assert "read_key" not in loads(canonical(plain), "test")
    secret = str(READ)
    keyed = Assignment(**fields, read_key=secret)  # type: ignore[arg-type]
    decoded = Assignment.from_dict(loads(canonical(keyed), "test"))
    assert decoded.read_key == secret and decoded.has_read_key
    assert secret not in repr(decoded)
    assert not Assignment.from_dict(loads(canonical(plain), "test")).has_read_key
    assert plain.read_key is msgspec.UNSET
