"""When the daemon calls for an operator: degraded too long, enrolment held too long, a GPU lost.

:class:`Escalation` only decides; the daemon queues each call it returns (agent.intervention
builds and signs the record). Each condition calls once per episode: a host that stays degraded
calls once, and calls again only after it recovered and degraded anew.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from cooee_agent.errors import CooeeError


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """One intervention call to queue."""

    reason: str
    detail: str
    severity: str = "warning"


class Escalation:
    """Tracks the episodes that call for help; used from the main loop thread only."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.degraded_since: float | None = None
        self._degraded_called = False
        self._pending_called_for: float | None = None  # the pending episode already called for
        self._lost_called: set[str] = set()

    def observe(self, state: str, lost: tuple[str, ...]) -> list[str]:
        """Note a heartbeat's state and lost GPUs; returns the GPUs lost since the last call."""
        if state == "degraded":
            if self.degraded_since is None:
                self.degraded_since = self._clock()
        else:
            self.degraded_since, self._degraded_called = None, False
        newly = [gpu_id for gpu_id in dict.fromkeys(lost) if gpu_id not in self._lost_called]
        self._lost_called = set(lost)
        return newly

    def due(
        self, reasons: tuple[str, ...], pending_since: float | None, threshold: float
    ) -> list[Call]:
        """The calls due now: degraded or pending (since ``pending_since``) past ``threshold``."""
        now, due = self._clock(), []
        if (
            self.degraded_since is not None
            and not self._degraded_called
            and now - self.degraded_since >= threshold
        ):
            self._degraded_called = True
            due.append(
                Call(
                    "degraded",
                    f"degraded for {now - self.degraded_since:.0f} s: " + "; ".join(reasons),
                )
            )
        if (
            pending_since is not None
            and pending_since != self._pending_called_for
            and now - pending_since >= threshold
        ):
            self._pending_called_for = pending_since
            due.append(
                Call(
                    "enrolment-pending",
                    f"no assignment after {now - pending_since:.0f} s; the Leader may be "
                    "holding this enrolment for approval (leader approve) or be unreachable",
                )
            )
        return due


def lost_call(gpu_id: str) -> Call:
    return Call("gpu-lost", f"GPU {gpu_id} is no longer seen", severity="critical")


def local_hostname() -> str:
    """This host's normalised name, for a call made before discovery named it."""
    from cooee_agent.discovery.host import hostname
    from cooee_agent.identity.canonical import normalise_hostname

    try:
        return normalise_hostname(hostname())
    except CooeeError:
        return "unknown"
