"""Ping the systemd watchdog only while the main loop makes progress, so a hung loop restarts."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from cooee_agent.agent import systemd
from cooee_agent.agent.periodic import Periodic

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class Progress:
    """The main loop's pulse: it calls ``beat()`` after every healthy turn.

    Thread-safe by construction: one float is replaced atomically, read by the pinger's thread.
    """

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._last = clock()

    def beat(self) -> None:
        self._last = self._clock()

    def age(self) -> float:
        """Seconds since the last beat."""
        return self._clock() - self._last


class WatchdogPinger:
    """Sends WATCHDOG=1 every ``period`` seconds, but only while ``progress`` is fresh.

    With systemd's timeout T (``WatchdogSec``), the defaults ping every T/4 while the last beat
    is younger than T/2; a loop that stops beating at time t gets its last ping by t + T/2 and
    is killed by t + 3T/2. So the loop must beat more often than every T/2 (every few seconds
    is right). The pinger runs in its own thread: a loop stuck in a blocking call, or a trio
    loop that never yields, cannot beat, and that is exactly what it detects.
    """

    def __init__(
        self,
        progress: Progress,
        timeout: float,
        *,
        period: float | None = None,
        max_age: float | None = None,
        send: Callable[[], bool] = systemd.watchdog,
    ) -> None:
        if timeout <= 0:
            raise ValueError("watchdog timeout must be positive")
        self.progress = progress
        self.timeout = timeout
        self.period = period if period is not None else timeout / 4
        self.max_age = max_age if max_age is not None else timeout / 2
        self._send = send
        self._stalled = False
        self._loop = Periodic("watchdog", lambda: self.period, self.tick, at_start=True)

    @classmethod
    def from_env(
        cls, progress: Progress, env: Mapping[str, str] | None = None
    ) -> WatchdogPinger | None:
        """A pinger for the watchdog systemd armed for this process, or None when it armed none."""
        timeout = systemd.watchdog_interval(env)
        return cls(progress, timeout) if timeout is not None else None

    def tick(self) -> bool:
        """One check: ping if the loop is healthy. Returns whether a ping was sent."""
        age = self.progress.age()
        if age > self.max_age:
            if not self._stalled:
                log.error("main loop made no progress for %.1f s; withholding watchdog pings", age)
                self._stalled = True
            return False
        if self._stalled:
            log.warning("main loop is making progress again; watchdog pings resume")
            self._stalled = False
        return self._send()

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def __enter__(self) -> WatchdogPinger:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
