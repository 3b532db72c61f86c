"""MAC helpers the Linux and macOS NIC choices share: usable addresses and a stable name order."""

from __future__ import annotations

import re

from cooee_agent.errors import IdentityError
from cooee_agent.identity.canonical import normalise_mac


def usable_mac(value: str | None) -> str | None:
    """The normalised MAC, or None for anything no host can be named by."""
    if not value:
        return None
    try:
        return normalise_mac(value.strip())
    except IdentityError:
        return None


def colon_mac(digits: str) -> str:
    """12 hex digits as aa:bb:cc:dd:ee:ff."""
    return ":".join(digits[index : index + 2] for index in range(0, 12, 2))


def natural_key(name: str) -> tuple[object, ...]:
    """Sort key putting eth2 before eth10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))
