"""Errors of the enrolment boundary: unsafe key files and rejected envelopes, each with a reason."""

from __future__ import annotations

from cooee_agent.errors import CooeeError, SealError

# The closed set of reasons an envelope is refused for; docs/PROTOCOL.md section 6 defines each.
REASONS = (
    "wrong-recipient",
    "bad-signature",
    "stale",
    "replayed",
    "schema",
    "key-mismatch",
)


class KeyFileError(CooeeError):
    """A key file is missing, unreadable, malformed or readable by group or others."""


class RejectedError(SealError):
    """An envelope or record was refused; ``reason`` is one of REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
