"""Strict unpadded base64url, the one binary-to-text form used on the wire."""

from __future__ import annotations

import base64
import binascii
import re

_ALPHABET = re.compile(r"^[A-Za-z0-9_-]*$")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode(text: str, length: int | None = None) -> bytes:
    """Decode unpadded base64url; only the canonical spelling of each value is accepted.

    Canonical means re-encoding gives the same text back, so one value has exactly one spelling
    (a signature over JSON must not be satisfied by two different texts).
    """
    if not isinstance(text, str) or not _ALPHABET.match(text):
        raise ValueError("not unpadded base64url")
    # binascii straight, not base64's wrappers of it: the Leader decodes six keys and
    # signatures an enrolment, and the wrappers cost a third of each decode.
    raw = text.encode("ascii")
    try:
        data = binascii.a2b_base64(raw.translate(_FROM_URLSAFE) + b"=" * (-len(raw) % 4))
    except binascii.Error as error:
        raise ValueError(f"not base64url: {error}") from error
    if binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=") != raw:
        raise ValueError("not the canonical base64url spelling")
    if length is not None and len(data) != length:
        raise ValueError(f"decodes to {len(data)} bytes, expected {length}")
    return data
