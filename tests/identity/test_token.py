"""The token codec: bit-exact with the reference table, lenient only as Crockford allows."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cooee_agent.errors import TokenError
from cooee_agent.identity import token as codec

# SHA-256 of the reference table: one line "version host_id gpu_slot reserved TOKEN\n" per input,
# fields ascending in that order (8 x 1024 x 16 x 4 = 524,288 lines).
REFERENCE_TABLE_SHA256 = "d6c69a7a00534008151ca1175667c2e347b195cc6e1d00567964cbf60583d3e3"

# Published samples of the reference codec.
REFERENCE_SAMPLES = [
    ((1, 42, 3, 0), "458RV"),
    ((1, 0, 0, 0), "4001Y"),
    ((7, 1023, 15, 3), "ZZZZT"),
    ((0, 0, 0, 0), "0000W"),
    ((0, 4, 1, 3), "00GFJ"),
    ((0, 8, 3, 2), "010XE"),
    ((0, 12, 5, 1), "01HB1"),
    ((0, 16, 7, 0), "021S9"),
    ((1, 41, 0, 0), "4541S"),
]

versions = st.integers(0, codec.MAX_VERSION)
host_ids = st.integers(0, codec.MAX_HOST_ID)
slots = st.integers(0, codec.MAX_GPU_SLOT)
reserveds = st.integers(0, codec.MAX_RESERVED)


def test_all_524288_tokens_match_the_reference_table() -> None:
    digest = hashlib.sha256()
    for version in range(8):
        for host_id in range(1024):
            lines = [
                f"{version} {host_id} {slot} {reserved} "
                f"{codec.encode(version, host_id, slot, reserved)}\n"
                for slot in range(16)
                for reserved in range(4)
            ]
            digest.update("".join(lines).encode("ascii"))
    assert digest.hexdigest() == REFERENCE_TABLE_SHA256


@pytest.mark.parametrize(("fields", "text"), REFERENCE_SAMPLES)
def test_encode_matches_reference_samples(fields: tuple[int, int, int, int], text: str) -> None:
    assert codec.encode(*fields) == text
    decoded = codec.decode(text)
    assert (decoded.version, decoded.host_id, decoded.gpu_slot, decoded.reserved) == fields


def test_decode_of_458RV_is_version_1_host_42_slot_3() -> None:
    assert codec.decode("458RV") == codec.Token(version=1, host_id=42, gpu_slot=3, reserved=0)


@given(versions, host_ids, slots, reserveds)
def test_round_trip(version: int, host_id: int, slot: int, reserved: int) -> None:
    text = codec.encode(version, host_id, slot, reserved)
    assert len(text) == 5
    assert text == text.upper()
    assert codec.decode(text) == codec.Token(version, host_id, slot, reserved)
    assert str(codec.decode(text)) == text


@given(versions, host_ids, slots, reserveds, st.data())
def test_decode_accepts_lower_case_aliases_and_hyphens(
    version: int, host_id: int, slot: int, reserved: int, data: st.DataObject
) -> None:
    text = codec.encode(version, host_id, slot, reserved)
    variant = []
    for char in text:
        choices = [char, char.lower()]
        if char == "0":
            choices += ["O", "o"]
        if char == "1":
            choices += ["I", "i", "L", "l"]
        variant.append(data.draw(st.sampled_from(choices)))
        if data.draw(st.booleans()):
            variant.append("-")
    assert codec.decode("".join(variant)) == codec.decode(text)


def test_oo1y_alias_decodes_like_4001y() -> None:
    assert codec.decode("4OO1Y") == codec.decode("4001Y")


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("4541\u017f", "non-ASCII"),  # long s: Go's ToUpper makes it S and accepts it
        ("454\u00df", "non-ASCII"),  # sharp s: Python's upper() makes it SS
        ("45C0\u212a", "non-ASCII"),  # Kelvin sign
        ("\uff14\uff15\uff18\uff32\uff36", "non-ASCII"),  # fullwidth 458RV
        ("458R\u0131", "non-ASCII"),  # dotless i
        ("458R", "4 characters"),
        ("458RV0", "6 characters"),
        ("", "0 characters"),
        ("458RU", "'U' at position 5"),
        ("458R ", "' ' at position 5"),
        ("458R\x00", "position 5"),
        ("458RV\n", "position 6"),
        ("ZZZZZ", "checksum"),
        ("00000", "checksum"),
        ("458R-", "hyphens not counted"),
    ],
)
def test_decode_rejects_with_a_message_naming_the_fault(text: str, fault: str) -> None:
    with pytest.raises(TokenError, match=fault.replace("(", r"\(")):
        codec.decode(text)


@given(st.text(min_size=1, max_size=8).filter(lambda s: not s.isascii()))
def test_decode_rejects_every_non_ascii_input(text: str) -> None:
    with pytest.raises(TokenError, match="non-ASCII"):
        codec.decode(text)


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=10))
def test_decode_either_returns_a_token_that_re_encodes_or_raises_token_error(text: str) -> None:
    try:
        token = codec.decode(text)
    except TokenError:
        return
    canonical = text.replace("-", "").upper().replace("O", "0").replace("I", "1").replace("L", "1")
    assert token.text == canonical


@given(versions, host_ids, slots, reserveds, st.integers(0, 4), st.data())
def test_single_substitutions_never_decode_to_a_token_that_encodes_differently(
    version: int, host_id: int, slot: int, reserved: int, position: int, data: st.DataObject
) -> None:
    text = codec.encode(version, host_id, slot, reserved)
    replacement = data.draw(st.sampled_from([c for c in codec.ALPHABET if c != text[position]]))
    mutated = text[:position] + replacement + text[position + 1 :]
    try:
        token = codec.decode(mutated)
    except TokenError as error:
        assert "checksum" in str(error)
        return
    # The 6-bit checksum lets ~1.2 % through; then the token must be self-consistent.
    assert token.text == mutated


@pytest.mark.parametrize(
    ("kwargs", "fault"),
    [
        ({"version": 8, "host_id": 0, "gpu_slot": 0}, "version 8 is out of range 0..7"),
        ({"version": 1, "host_id": 1024, "gpu_slot": 0}, "host_id 1024 is out of range 0..1023"),
        ({"version": 1, "host_id": -1, "gpu_slot": 0}, "host_id -1 is out of range"),
        ({"version": 1, "host_id": 0, "gpu_slot": 16}, "gpu_slot 16 is out of range 0..15"),
        ({"version": 1, "host_id": 0, "gpu_slot": 0, "reserved": 4}, "reserved 4 is out of range"),
        ({"version": 1, "host_id": True, "gpu_slot": 0}, "host_id must be an integer"),
    ],
)
def test_encode_rejects_out_of_range_fields_instead_of_masking(
    kwargs: dict[str, int], fault: str
) -> None:
    with pytest.raises(TokenError, match=fault.replace(".", r"\.")):
        codec.encode(**kwargs)


def field_values(maximum: int) -> st.SearchStrategy[int]:
    """Mostly in range, so that a later field is reached; sometimes out of it, or a bool."""
    return st.integers(0, maximum) | st.integers(-2, 1030) | st.booleans()


@given(
    field_values(codec.MAX_VERSION),
    field_values(codec.MAX_HOST_ID),
    field_values(codec.MAX_GPU_SLOT),
    field_values(codec.MAX_RESERVED),
)
def test_encode_refuses_the_first_bad_field_and_encodes_every_good_one(
    version: int, host_id: int, slot: int, reserved: int
) -> None:
    limits = (
        ("version", version, codec.MAX_VERSION),
        ("host_id", host_id, codec.MAX_HOST_ID),
        ("gpu_slot", slot, codec.MAX_GPU_SLOT),
        ("reserved", reserved, codec.MAX_RESERVED),
    )
    for name, value, maximum in limits:
        if isinstance(value, bool):
            fault = f"{name} must be an integer, got bool"
        elif not 0 <= value <= maximum:
            fault = f"{name} {value} is out of range 0..{maximum}"
        else:
            continue
        with pytest.raises(TokenError) as raised:
            codec.encode(version, host_id, slot, reserved)
        assert str(raised.value) == fault
        return
    decoded = codec.decode(codec.encode(version, host_id, slot, reserved))
    assert (decoded.version, decoded.host_id, decoded.gpu_slot, decoded.reserved) == (
        version,
        host_id,
        slot,
        reserved,
    )


def test_token_error_is_a_value_error_with_input_exit_code() -> None:
    assert issubclass(TokenError, ValueError)
    assert TokenError.exit_code == 2
