"""Registry errors: the operator named no host, several, or the id space is full."""

from __future__ import annotations

from cooee_agent.errors import CooeeError


class RegistryError(CooeeError):
    """The registry cannot do what was asked (unknown host, ambiguous name, bad state)."""


class HostIdExhausted(RegistryError):
    """Every host_id (0..1023) is taken; a new host cannot be admitted."""
