"""Strict unpadded base64url: every value has one spelling, and anything else is refused with
the words the decoder built on base64's own wrappers gave."""

from __future__ import annotations

import base64
import binascii
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cooee_agent.protocol import b64


def decoded_through_base64(text: object, length: int | None = None) -> bytes:
    """The decoder as it was written on base64.urlsafe_b64decode, for comparison."""
    if not isinstance(text, str) or not re.match(r"^[A-Za-z0-9_-]*$", text):
        raise ValueError("not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"not base64url: {error}") from error
    if b64.encode(data) != text:
        raise ValueError("not the canonical base64url spelling")
    if length is not None and len(data) != length:
        raise ValueError(f"decodes to {len(data)} bytes, expected {length}")
    return data


def outcome(decode: object, text: object, length: int | None) -> bytes | str:
    try:
        return decode(text, length)  # type: ignore[operator, no-any-return]
    except ValueError as error:
        return f"refused: {error}"


URLSAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@given(
    st.binary(max_size=80).map(b64.encode)
    | st.text(URLSAFE, max_size=90)
    | st.text(URLSAFE + "+/= \n\u00e9", max_size=20),
    st.none() | st.sampled_from([0, 32, 64]),
)
def test_decode_answers_as_the_base64_module_did(text: str, length: int | None) -> None:
    assert outcome(b64.decode, text, length) == outcome(decoded_through_base64, text, length)


@given(st.binary(max_size=80))
def test_every_value_round_trips_through_its_one_spelling(data: bytes) -> None:
    assert b64.decode(b64.encode(data)) == data


@pytest.mark.parametrize("text", ["AB", "AR", "AAB", "AAC"])
def test_a_spelling_with_bits_set_past_the_data_is_refused(text: str) -> None:
    # Each decodes (leniently) to the bytes of "AA" or "AAA" with bits those bytes do not use:
    # a second spelling of the same value.
    with pytest.raises(ValueError, match="not the canonical base64url spelling"):
        b64.decode(text)


def test_a_non_string_is_refused() -> None:
    with pytest.raises(ValueError, match="not unpadded base64url"):
        b64.decode(b"AAAA")  # type: ignore[arg-type]
