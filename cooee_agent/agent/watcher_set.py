"""The daemon's change watchers as a set: started and stopped together, each failure kept to
its own watcher, so a missing udev never stops the Ollama poller (or the daemon)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Protocol

log = logging.getLogger(__name__)


class Watcher(Protocol):
    """Something that watches for a change on its own thread and asks for a rediscovery."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Watchers:
    """The running watchers; ``start`` makes and starts a new set, ``stop`` ends it."""

    def __init__(self) -> None:
        self.running: list[Watcher] = []

    def start(self, make: Callable[[], Iterable[Watcher]]) -> None:
        try:
            made = list(make())
        except Exception:
            log.warning("change watchers unavailable", exc_info=True)
            made = []
        for watcher in made:
            try:
                watcher.start()
                self.running.append(watcher)
            except Exception as error:
                log.warning("%s not started: %s", type(watcher).__name__, error)

    def stop(self) -> None:
        for watcher in self.running:
            try:
                watcher.stop()
            except Exception:
                log.debug("stopping %s failed", type(watcher).__name__, exc_info=True)
        self.running = []
