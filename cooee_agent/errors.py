"""The exception hierarchy: every failure the agent reports is a CooeeError with an exit code."""

from __future__ import annotations


class CooeeError(Exception):
    """Base of every error the agent raises on purpose.

    ``exit_code`` follows the CLI contract: 1 for a failure at run time, 2 for bad usage or input.
    """

    exit_code = 1


class InputError(CooeeError, ValueError):
    """Input from a user, a file or the wire was malformed."""

    exit_code = 2


class TokenError(InputError):
    """A token could not be encoded or decoded."""


class IdentityError(InputError):
    """A canonical-tuple field failed normalisation."""


class AddressError(InputError):
    """A UCXL address was malformed."""


class ConfigError(InputError):
    """The configuration file or an option was invalid."""


class DiscoveryError(CooeeError):
    """A probe could not produce what identity needs."""


class ProbeError(DiscoveryError):
    """One probe gave no answer; ``reason`` is the stable code a ProbeFailure carries."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class SealError(CooeeError):
    """An envelope could not be sealed or opened."""


class TransportError(CooeeError):
    """The COOEE channel failed."""
