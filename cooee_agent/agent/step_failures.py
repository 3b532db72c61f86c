"""Logging a main-loop step that fails turn after turn: the traceback once, then a count.

A fault that lasts (a full disk, a read-only state directory) fails the same step every turn,
about once a second. Logging its traceback each time floods the journal (and, on a full disk,
the very disk). The first failure of a step is logged with its traceback; the same failure
again is counted and summarised at most once per ``REPEAT_WINDOW_S``; a different failure, or
the step's recovery, is logged at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

# How often a failure that repeats every turn is said again (with the count since last said).
REPEAT_WINDOW_S = 60.0


@dataclass
class _Fault:
    text: str
    said_at: float
    unsaid: int = 0


class StepFailures:
    """Per step: the failure it is in, if any, and when it was last said."""

    def __init__(self, log: logging.Logger, clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._clock = clock
        self._faults: dict[str, _Fault] = {}

    def failed(self, step: str, error: BaseException) -> None:
        """Call from the ``except`` block of a failed step."""
        text = f"{type(error).__name__}: {error}"
        now = self._clock()
        fault = self._faults.get(step)
        if fault is None or fault.text != text:
            self._faults[step] = _Fault(text, now)
            self._log.exception("main loop step %s failed; carrying on", step)
            return
        fault.unsaid += 1
        if now - fault.said_at >= REPEAT_WINDOW_S:
            self._log.error(
                "main loop step %s still failing (%d more time(s) in %.0f s): %s",
                step,
                fault.unsaid,
                now - fault.said_at,
                text,
            )
            fault.said_at, fault.unsaid = now, 0

    def succeeded(self, step: str) -> None:
        """Call after a step ran; a step that had been failing says it recovered."""
        fault = self._faults.pop(step, None)
        if fault is not None:
            self._log.warning("main loop step %s works again (after: %s)", step, fault.text)
