"""Notice when re-discovery is due: udev events on drm/net (debounced) and Ollama model changes."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cooee_agent.agent.periodic import Periodic

log = logging.getLogger(__name__)

# Actions that can change the inventory. "change" is left out: DRM sends one for every monitor
# plugged into a GPU, which changes no tuple.
INVENTORY_ACTIONS = frozenset({"add", "remove", "move", "bind", "unbind"})


@dataclass(frozen=True, slots=True)
class Change:
    """Something that may change the inventory happened; ``details`` say what, for the log."""

    source: str  # "udev" or "ollama"
    details: tuple[str, ...]


OnChange = Callable[[Change], None]


class Debouncer:
    """Collects items and hands them over in one batch once ``quiet`` seconds pass without more.

    A burst (a GPU driver binding creates a dozen devices) becomes one call of ``fire``. An
    endless storm still fires every ``max_wait`` seconds, so it cannot postpone discovery
    forever. ``fire`` runs on the debouncer's own thread.
    """

    def __init__(
        self,
        quiet: float,
        fire: Callable[[tuple[str, ...]], None],
        *,
        max_wait: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if quiet <= 0:
            raise ValueError("quiet period must be positive")
        self.quiet = quiet
        self.max_wait = max_wait if max_wait is not None else 15 * quiet
        self._fire = fire
        self._clock = clock
        self._cond = threading.Condition()
        self._items: list[str] = []
        self._first = self._last = 0.0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="debounce", daemon=True)
        self._thread.start()

    def poke(self, item: str) -> None:
        with self._cond:
            now = self._clock()
            if not self._items:
                self._first = now
            self._last = now
            self._items.append(item)
            self._cond.notify()

    def close(self) -> None:
        """Stop; a batch still waiting for its quiet period is dropped."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _due(self) -> float:
        """Seconds until the pending batch is due (<= 0: now)."""
        now = self._clock()
        return min(self._last + self.quiet, self._first + self.max_wait) - now

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._items or self._due() > 0):
                    self._cond.wait(self._due() if self._items else None)
                if self._closed:
                    return
                batch, self._items = tuple(self._items), []
            try:
                self._fire(batch)
            except Exception:
                log.exception("change handler failed")


class UdevWatcher:
    """Watches udev for devices appearing or leaving in ``subsystems``; one Change per burst."""

    def __init__(
        self,
        on_change: OnChange,
        *,
        subsystems: Iterable[str] = ("drm", "net"),
        quiet: float = 2.0,
        max_wait: float | None = None,
        actions: frozenset[str] = INVENTORY_ACTIONS,
    ) -> None:
        self.subsystems = tuple(subsystems)
        self.actions = actions
        self._on_change = on_change
        self._quiet = quiet
        self._max_wait = max_wait
        self._observer: Any = None
        self._debouncer: Debouncer | None = None

    def start(self) -> None:
        import pyudev  # type: ignore[import-untyped]  # Linux only; loaded when watching starts

        context = pyudev.Context()
        monitor = pyudev.Monitor.from_netlink(context)
        for subsystem in self.subsystems:
            monitor.filter_by(subsystem)
        self._debouncer = Debouncer(
            self._quiet,
            # A burst repeats itself (umockdev and real drivers both send "add" twice): say it once.
            lambda batch: self._on_change(Change("udev", tuple(dict.fromkeys(batch)))),
            max_wait=self._max_wait,
        )
        # Start listening before anyone asks for discovery, so no event falls in between.
        monitor.start()
        self._observer = pyudev.MonitorObserver(monitor, callback=self._event, name="udev")
        self._observer.start()
        log.debug("watching udev subsystems %s", ", ".join(self.subsystems))

    def _event(self, device: Any) -> None:
        action = device.action or "?"
        if action not in self.actions:
            return
        assert self._debouncer is not None
        self._debouncer.poke(f"{device.subsystem} {action} {device.sys_name}")

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer = None
        if self._debouncer is not None:
            self._debouncer.close()
            self._debouncer = None

    def __enter__(self) -> UdevWatcher:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


Digests = frozenset[tuple[str, str]]


def fetch_ollama_digests(base_url: str, timeout: float = 5.0) -> Digests:
    """The installed models as (name, digest) pairs, from Ollama's ``GET /api/tags``."""
    url = base_url.rstrip("/") + "/api/tags"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        payload = json.load(response)
    models = payload.get("models") if isinstance(payload, dict) else None
    if not isinstance(models, list):
        raise ValueError(f"{url}: no 'models' list in the response")
    pairs = set()
    for model in models:
        if not isinstance(model, dict) or not isinstance(model.get("name"), str):
            raise ValueError(f"{url}: a model entry has no name")
        pairs.add((model["name"], str(model.get("digest", ""))))
    return frozenset(pairs)


class OllamaPoller:
    """Polls ``fetch`` every ``interval`` seconds; a changed digest set is one Change.

    ``baseline`` is what the last discovery saw (empty when Ollama was unreachable then);
    None takes the first successful poll as the baseline. A failed poll changes nothing: the
    heartbeat reports Ollama's outage, and re-enrolling on every blip would only churn.
    """

    def __init__(
        self,
        fetch: Callable[[], Digests],
        on_change: OnChange,
        *,
        interval: float = 15.0,
        baseline: Digests | None = None,
    ) -> None:
        self.interval = interval
        self.baseline = baseline
        self._fetch = fetch
        self._on_change = on_change
        self._failing = False
        self._loop = Periodic("ollama-poll", lambda: self.interval, self._poll_safely)

    def poll(self) -> Change | None:
        """One poll; delivers and returns the Change if the set moved, else None."""
        try:
            current = frozenset(self._fetch())
        except Exception as error:  # any failure of the fetch is the same outage to us
            if not self._failing:
                log.warning("Ollama model poll failed: %s", error)
            self._failing = True
            return None
        if self._failing:
            log.info("Ollama model poll works again")
            self._failing = False
        previous, self.baseline = self.baseline, current
        if previous is None or previous == current:
            return None
        change = Change("ollama", _describe(previous, current))
        self._on_change(change)
        return change

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def _poll_safely(self) -> None:
        try:
            self.poll()
        except Exception:
            log.exception("change handler failed")

    def __enter__(self) -> OllamaPoller:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _describe(previous: Digests, current: Digests) -> tuple[str, ...]:
    before, after = dict(previous), dict(current)
    lines = [f"added {name}" for name in sorted(after.keys() - before.keys())]
    lines += [f"removed {name}" for name in sorted(before.keys() - after.keys())]
    lines += [
        f"updated {name}"
        for name in sorted(before.keys() & after.keys())
        if before[name] != after[name]
    ]
    return tuple(lines)
