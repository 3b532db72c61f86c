"""A named daemon thread that calls one function every ``period`` seconds until stopped."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Periodic:
    """``start()`` once, ``stop()`` joins; ``at_start`` calls the function before the first wait."""

    def __init__(
        self,
        name: str,
        period: Callable[[], float],
        action: Callable[[], object],
        *,
        at_start: bool = False,
    ) -> None:
        self.name = name
        self._period = period
        self._action = action
        self._at_start = at_start
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        if self._at_start:
            self._action()
        while not self._stop.wait(self._period()):
            self._action()
