"""A sealed envelope parsed on the canonical fast path and on the general path: the same envelope,
or the same refusal with the same words, for every input; and the armor check against the
regular expression it replaced."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from enrolment_factory import agent_keys, record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cooee_agent.protocol import b64, envelope
from cooee_agent.protocol.envelope import (
    ARMOR_BEGIN,
    ARMOR_END,
    ENVELOPE_CONTEXT,
    is_armored,
    parse_envelope,
)
from cooee_agent.protocol.errors import RejectedError
from cooee_agent.protocol.keys import generate_leader_keys, load_leader_keys
from cooee_agent.protocol.schema import canonical
from cooee_agent.protocol.sealing import seal_enrolment

KEYS = agent_keys()
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ARMOR = re.compile(
    re.escape(ARMOR_BEGIN) + r"\n[A-Za-z0-9+/=\n]*\n" + re.escape(ARMOR_END) + r"\n?"
)


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    directory = tmp_path_factory.mktemp("leader")
    generate_leader_keys(directory)
    return seal_enrolment(record(KEYS, gpus=2), KEYS, load_leader_keys(directory).bundle)


def signed_envelope(value: dict[str, Any], key: Ed25519PrivateKey = KEYS.signing) -> bytes:
    """``value`` signed as an envelope, whatever it holds."""
    unsigned = {name: item for name, item in value.items() if name != "sig"}
    value = {**unsigned, "sig": b64.encode(key.sign(ENVELOPE_CONTEXT + canonical(unsigned)))}
    return canonical(value)


def outcome(data: bytes, *, general_only: bool = False) -> tuple[Any, ...]:
    saved = envelope._parse_canonical_sealed
    if general_only:
        envelope._parse_canonical_sealed = lambda _: None  # type: ignore[assignment]
    try:
        return ("accepted", parse_envelope(data))
    except RejectedError as error:
        return ("refused", error.reason, str(error))
    finally:
        envelope._parse_canonical_sealed = saved  # type: ignore[assignment]


def both(data: bytes) -> tuple[Any, ...]:
    fast = outcome(data)
    assert fast == outcome(data, general_only=True)
    return fast


armor_pieces = st.lists(
    st.sampled_from(
        (ARMOR_BEGIN, ARMOR_END, "\n", "\r\n", "YWdl", "+/=", "-", " ", "é", "\x00", "A")
    ),
    max_size=8,
)


@settings(max_examples=500)
@given(armor_pieces)
def test_the_armor_check_is_the_strict_pem_expression(pieces: list[str]) -> None:
    body = "".join(pieces)
    assert is_armored(body) == bool(ARMOR.fullmatch(body))


@pytest.mark.parametrize(
    ("body", "armored"),
    [
        (f"{ARMOR_BEGIN}\n\n{ARMOR_END}", True),
        (f"{ARMOR_BEGIN}\nYWdl\n{ARMOR_END}\n", True),
        (f"{ARMOR_BEGIN}\n{ARMOR_END}", False),  # the begin line's LF is not also the end's
        (f"{ARMOR_BEGIN}\nYWdl\n{ARMOR_END}\n\n", False),
        (f"{ARMOR_BEGIN}\r\nYWdl\r\n{ARMOR_END}", False),
        (f"{ARMOR_BEGIN}\nYW-l\n{ARMOR_END}", False),
        (None, False),
    ],
)
def test_armor_examples(body: Any, armored: bool) -> None:
    assert is_armored(body) is armored
    assert bool(isinstance(body, str) and ARMOR.fullmatch(body)) is armored


def test_a_canonical_sealed_envelope_takes_the_fast_path(sealed: bytes) -> None:
    assert envelope._parse_canonical_sealed(sealed) is not None
    assert both(sealed)[0] == "accepted"


@SETTINGS
@given(st.data())
def test_a_changed_field_is_refused_or_taken_alike(sealed: bytes, data: Any) -> None:
    value = envelope.loads(sealed, "envelope")
    field = data.draw(st.sampled_from(sorted(value)))
    changed = copy.deepcopy(value)
    change = data.draw(st.sampled_from(("replace", "delete", "add")))
    if change == "delete":
        del changed[field]
    elif change == "add":
        changed[data.draw(st.text(max_size=6))] = data.draw(st.integers() | st.text(max_size=6))
    else:
        changed[field] = data.draw(
            st.none()
            | st.booleans()
            | st.integers(-(2**60), 2**60)
            | st.text(max_size=12)
            | st.sampled_from(("availability", "enrolment", "\u2028", value["body"] + "\n"))
        )
    both(signed_envelope(changed))


@SETTINGS
@given(st.data())
def test_changed_bytes_are_refused_or_taken_alike(sealed: bytes, data: Any) -> None:
    wire = bytearray(sealed)
    position = data.draw(st.integers(0, len(wire) - 1))
    edit = data.draw(st.sampled_from(("insert", "replace", "delete")))
    if edit == "delete":
        del wire[position]
    else:
        chunk = data.draw(
            st.sampled_from((b" ", b"\\u0061", b"\xc3\xa9", b"1.0", b'"v":1,', b"\\r"))
            | st.binary(min_size=1, max_size=3)
        )
        wire[position : position + (edit == "replace")] = chunk
    both(bytes(wire))


def test_laxer_json_of_the_same_envelope_leaves_the_fast_path_and_is_taken(sealed: bytes) -> None:
    spaced = sealed.replace(b'{"address":', b'{ "address":', 1)
    escaped = sealed.replace(b'"kind":"enrolment"', b'"kind":"enrolm\\u0065nt"', 1)
    for lax in (spaced, escaped):
        assert envelope._parse_canonical_sealed(lax) is None
        assert both(lax) == outcome(sealed)


@pytest.mark.parametrize("char", ["\u200b", "\u2028", "\x07", "\ue000"])
def test_a_forbidden_character_in_the_address_is_refused_by_the_general_path(
    sealed: bytes, char: str
) -> None:
    value = envelope.loads(sealed, "envelope")
    wire = signed_envelope({**value, "address": value["address"] + char})
    assert envelope._parse_canonical_sealed(wire) is None
    assert both(wire)[:2] == ("refused", "schema")
    assert f"U+{ord(char):04X}" in both(wire)[2]


def test_a_bad_envelope_signature_is_named_on_the_fast_path(sealed: bytes) -> None:
    value = envelope.loads(sealed, "envelope")
    forged = signed_envelope(value, Ed25519PrivateKey.generate())  # sender still says KEYS
    assert both(forged) == (
        "refused",
        "bad-signature",
        "bad-signature: the envelope signature does not verify",
    )


# Text of any kind a record or a body may hold: escapes, non-ASCII, the characters JSON quotes.
texts = st.text(max_size=40) | st.sampled_from(("", '"', "\\", "\u2028", "é", "-----BEGIN"))
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=10,
)


@SETTINGS
@given(values, st.booleans())
def test_a_signed_record_is_written_as_the_canonical_signed_object(value: Any, named: bool) -> None:
    signer = b64.encode(KEYS.verify_key) if named else None
    written = envelope.signed_record_bytes(value, KEYS.signing, signer)
    assert written == canonical(envelope.sign_record(value, KEYS.signing))


@SETTINGS
@given(st.sampled_from(("enrolment", "assignment", "availability")), texts, values, st.booleans())
def test_an_envelope_is_written_as_make_envelope_writes_it(
    kind: str, address: str, body: Any, named: bool
) -> None:
    sender = b64.encode(KEYS.verify_key) if named else None
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    written = envelope.envelope_bytes(kind, address, body, KEYS.signing, sent_at=at, sender=sender)
    made = envelope.make_envelope(kind, address, body, KEYS.signing, sent_at=at)
    assert written == made.to_bytes()


def test_an_envelope_over_the_limit_is_refused_with_make_envelopes_words() -> None:
    body = "x" * envelope.MAX_ENVELOPE_BYTES
    with pytest.raises(RejectedError) as made:
        envelope.make_envelope("assignment", "a", body, KEYS.signing)
    with pytest.raises(RejectedError) as written:
        envelope.envelope_bytes("assignment", "a", body, KEYS.signing)
    assert str(written.value) == str(made.value)
