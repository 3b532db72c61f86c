"""The agent daemon (``cooee-agent run``): discover, enrol, heartbeat, watch, and tell systemd.

The core is :class:`AgentDaemon`, which takes its collaborators (transport factory, discovery,
usage probe, watchers, notifier, clocks, random source) as arguments, so tests run it in-process
over a MemoryBus; :func:`production_daemon` wires the real ones. One synchronous main loop does
everything that changes state; watchers and the watchdog pinger have their own threads and only
set flags. Nothing here lets an error end the loop: each step logs and the loop goes on.

Lifecycle: keys (state dir, 0600) -> Leader bundle (config) -> discovery -> mesh up, subscribe
to assignments -> READY=1 -> loop: read assignments, pump the outbox, heartbeat when due, raise
intervention calls, write status.json, beat the watchdog. SIGTERM: STOPPING=1, a ``leaving``
record, close. SIGHUP: reload the config (log level, heartbeat, Ollama host).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cooee_agent.agent import intervention as calls
from cooee_agent.agent.heartbeat import Announcement, availability, leaving
from cooee_agent.agent.state import (
    ASSIGNMENT_FILE,
    PENDING_FILE,
    SEQUENCE_FILE,
    STATUS_FILE,
    STATUS_SCHEMA,
    read_json,
    write_json,
)
from cooee_agent.agent.state import Sequence as SeqCounter
from cooee_agent.agent.systemd import Notifier
from cooee_agent.agent.usage import Usage, UsageProbe
from cooee_agent.agent.watchdog import Progress, WatchdogPinger
from cooee_agent.bus.outbox import Outbox
from cooee_agent.bus.transport import (
    TOPIC_ASSIGNMENT,
    TOPIC_AVAILABILITY,
    TOPIC_ENROL,
    Subscription,
    Transport,
)
from cooee_agent.config import Config
from cooee_agent.discovery.model import Inventory
from cooee_agent.errors import ConfigError, CooeeError

log = logging.getLogger(__name__)

ENROL_KEY = "enrolment"
MAX_PENDING_NONCES = 16  # earlier seals of the same enrolment whose assignment we still accept
REDISCOVER_RETRY = 60.0  # seconds between discovery attempts while no identity can be formed
LEAVING_GRACE = 0.5  # seconds for the leaving record to leave the process before the mesh closes


class Watcher(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


TransportFactory = Callable[[Config], Transport]
Discover = Callable[[Config], Inventory]
UsageFactory = Callable[[Config], UsageProbe]
WatcherFactory = Callable[["AgentDaemon"], Sequence[Watcher]]
PingerFactory = Callable[[Progress], "WatchdogPinger | None"]


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """What an enrolment says about this host, minus nonce and times; a change re-enrols."""

    digest: str
    hostname: str
    mac: str
    slots: int
    agents: int
    installed: tuple[str, ...]


class AgentDaemon:
    """The agent: one instance per state directory. ``run()`` blocks until ``stop()``."""

    def __init__(
        self,
        config: Config,
        *,
        transport_factory: TransportFactory,
        discover: Discover,
        usage: UsageFactory,
        watchers: WatcherFactory = lambda daemon: (),
        notifier: Notifier | None = None,
        pinger: PingerFactory = WatchdogPinger.from_env,
        config_loader: Callable[[], Config] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        tick: float = 1.0,
        resend_base: float = 5.0,
    ) -> None:
        self.config = config
        self.state_dir = Path(config.state_dir)
        self._transport_factory = transport_factory
        self._discover = discover
        self._usage_factory = usage
        self._watcher_factory = watchers
        self._notifier = notifier or Notifier()
        self._pinger_factory = pinger
        self._config_loader = config_loader
        self._clock = clock
        self._wall = wall
        self._rng = rng
        self.tick = tick
        self._resend_base = resend_base

        self.progress = Progress(clock)
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._rediscover = threading.Event()
        self._rediscover_why: list[str] = []
        self._why_lock = threading.Lock()

        self.bundles: list[Any] = []  # the Leader's key bundles, from the configuration
        self.transport: Transport | None = None
        self.outbox: Outbox | None = None
        self._subscription: Subscription | None = None
        self._watchers: list[Watcher] = []
        self._pinger: WatchdogPinger | None = None
        self._usage_probe: UsageProbe = usage(config)

        self.inventory: Inventory | None = None
        self._tuples: list[Any] = []
        self.identity: Identity | None = None
        self.identity_error: str | None = None
        self.assignment: Any = None  # enrolment.records.Assignment once enrolled
        self._assignment_identity: str | None = None
        self._pending: dict[str, Any] | None = None  # {"identity", "nonces", "since"}
        self._enrolling_since: float | None = None
        self._next_heartbeat: float | None = None
        self._next_discovery: float | None = None
        self.last_heartbeat: dict[str, Any] | None = None
        self.state = "available"
        self.reasons: tuple[str, ...] = ()
        self._degraded_since: float | None = None
        self._degraded_called = False
        self._pending_called = False
        self._lost_called: set[str] = set()
        self._last_status_line = ""
        self.started = threading.Event()
        self.exit_code = 0

    # -- thread-safe requests ----------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    def request_rediscovery(self, why: str) -> None:
        """Called by watchers (any thread): discovery runs on the next loop turn."""
        with self._why_lock:
            self._rediscover_why.append(why)
        self._rediscover.set()

    # -- derived state ----------------------------------------------------------------------

    @property
    def enrolment_state(self) -> str:
        if self.identity is None and self.assignment is None:
            return "discovering"
        if self._pending is not None and self._enrolling_since is not None:
            if self._clock() - self._enrolling_since >= self.config.degraded_threshold:
                return "pending"
            return "enrolling"
        return "enrolled" if self.assignment is not None else "enrolling"

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self, *, install_signals: bool | None = None) -> int:
        """Start, loop until stopped, shut down; returns the exit code (0 on a clean stop)."""
        if install_signals is None:
            install_signals = threading.current_thread() is threading.main_thread()
        # A configuration without a Leader is refused before anything starts (exit 2).
        self.bundles = leader_bundles(self.config)
        if install_signals:
            self._install_signals()
        try:
            self.start()
            while not self._stop.is_set():
                self.turn()
                self._wait()
        finally:
            self.shutdown()
        return self.exit_code

    def start(self) -> None:
        from cooee_agent.enrolment import load_or_create_agent_keys

        self.bundles = self.bundles or leader_bundles(self.config)
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.keys = load_or_create_agent_keys(self.state_dir)
        log.info("agent id %s, state in %s", self.keys.agent_id, self.state_dir)
        self.outbox = Outbox.open_in(
            self.state_dir, base_delay=self._resend_base, clock=self._wall, rng=self._rng
        )
        self.sequence = SeqCounter(self.state_dir / SEQUENCE_FILE)
        self._load_assignment()
        self._discover_now("start")
        self.transport = self._transport_factory(self.config)
        self._subscription = self.transport.subscribe(TOPIC_ASSIGNMENT)
        log.info("on the COOEE mesh as %s", self.transport.peer_id)
        self._resume_or_enrol()
        self._start_watchers()
        self._pinger = self._pinger_factory(self.progress)
        if self._pinger is not None:
            self._pinger.start()
        self._notifier.ready(self.status_line())
        self.started.set()

    def shutdown(self) -> None:
        """STOPPING=1, a leaving record when enrolled, then close everything (idempotent)."""
        self._notifier.stopping("stopping")
        # Stopping is not hanging: the pinger must not report the drain as a stalled loop.
        if self._pinger is not None:
            self._pinger.stop()
            self._pinger = None
        self._stop_watchers()
        if self.transport is not None:
            if self.assignment is not None:
                self._publish_leaving()
            try:
                self.transport.close()
            except Exception:
                log.warning("closing the mesh failed", exc_info=True)
            self.transport = None
        try:
            self.write_status(stopped=True)
        except Exception:
            log.debug("final status write failed", exc_info=True)
        if self.outbox is not None:
            self.outbox.close()
            self.outbox = None
        log.info("stopped")

    def turn(self) -> None:
        """One pass of the main loop; every step is isolated so one failure skips only itself."""
        for step in (
            self._maybe_reload,
            self._maybe_rediscover,
            self._read_assignments,
            self._pump,
            self._maybe_heartbeat,
            self._maybe_call,
            self.write_status,
            self._notify_status,
        ):
            try:
                step()
            except Exception:
                log.exception("main loop step %s failed; carrying on", step.__name__)
        self.progress.beat()

    def _wait(self) -> None:
        # Sleep on the assignment subscription: an arriving assignment is handled at once.
        timeout = self.tick
        if self._next_heartbeat is not None:
            timeout = min(timeout, max(0.0, self._next_heartbeat - self._clock()))
        if self._subscription is None or self._subscription.closed or timeout <= 0:
            self._stop.wait(timeout)
            return
        message = self._subscription.get(timeout=timeout)
        if message is not None:
            try:
                self._handle_assignment(message.data)
            except Exception:
                log.exception("handling an assignment failed; carrying on")

    def _install_signals(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        signal.signal(signal.SIGINT, lambda *_: self.stop())
        signal.signal(signal.SIGHUP, lambda *_: self.request_reload())

    # -- discovery and enrolment -------------------------------------------------------------

    def _discover_now(self, why: str) -> bool:
        """Run discovery; returns True when the identity changed (so enrolment is due)."""
        from cooee_agent.discovery.inventory import agent_tuples

        try:
            inventory = self._discover(self.config)
        except Exception as error:
            log.error("discovery failed (%s): %s", why, error, exc_info=True)
            self._next_discovery = self._clock() + REDISCOVER_RETRY
            return False
        for failure in inventory.failures:
            log.debug("probe %s: %s: %s", failure.probe, failure.reason, failure.detail)
        try:
            tuples = agent_tuples(inventory)
            identity = identity_of(inventory, tuples, self.keys, self.bundles)
        except CooeeError as error:
            if self.identity_error != str(error):
                log.error("no identity can be formed: %s", error)
            self.identity_error = str(error)
            self.inventory = inventory
            self._next_discovery = self._clock() + REDISCOVER_RETRY
            return False
        self._tuples = tuples
        self.inventory = inventory
        self.identity_error = None
        self._next_discovery = None
        changed = self.identity is None or identity.digest != self.identity.digest
        if changed:
            log.info(
                "discovered %s (%s): %d slot(s), %d agent(s) [%s]",
                identity.hostname,
                identity.mac,
                identity.slots,
                identity.agents,
                why,
            )
        else:
            log.debug("re-discovery (%s): no change", why)
        self.identity = identity
        return changed

    def _maybe_rediscover(self) -> None:
        due = self._next_discovery is not None and self._clock() >= self._next_discovery
        if not (self._rediscover.is_set() or due):
            return
        self._rediscover.clear()
        with self._why_lock:
            why = "; ".join(dict.fromkeys(self._rediscover_why)) or "retry"
            self._rediscover_why.clear()
        if self._discover_now(why):
            self._enrol(f"tuples changed ({why})")

    def _resume_or_enrol(self) -> None:
        """At start: keep the stored assignment if it still matches, resume a pending
        enrolment whose outbox item survived a restart, or enrol afresh."""
        if self.identity is None:
            return
        if self.assignment is not None and self._assignment_identity == self.identity.digest:
            log.info("enrolled as host %d (stored assignment)", self.assignment.host_id)
            self._heartbeat_soon()
            return
        assert self.outbox is not None
        pending = read_json(self.state_dir / PENDING_FILE)
        item = self.outbox.get(ENROL_KEY)
        if (
            item is not None
            and isinstance(pending, dict)
            and pending.get("identity") == self.identity.digest
            and isinstance(pending.get("nonces"), list)
        ):
            self._pending = pending
            self._enrolling_since = self._clock()
            log.info("resuming the pending enrolment (%d send(s) so far)", item.attempts)
            return
        self._enrol("not enrolled" if self.assignment is None else "tuples changed")

    def _enrol(self, why: str) -> None:
        from cooee_agent.enrolment import build_enrolment, seal_enrolment

        if self.inventory is None or self.identity is None:
            return
        assert self.outbox is not None
        record = build_enrolment(
            self.inventory, self._tuples, self.keys, join_token=self.config.join_token
        )
        data = seal_enrolment(record, self.keys, sealing_bundle(self.bundles))
        pending = self._pending
        if pending is None or pending.get("identity") != self.identity.digest:
            pending = {"identity": self.identity.digest, "nonces": [], "since": self._wall()}
            self._enrolling_since = self._clock()
            self._pending_called = False
        pending["nonces"] = [*pending["nonces"], record.nonce][-MAX_PENDING_NONCES:]
        # The nonce is on disk before the envelope is: an assignment for it is always accepted.
        write_json(self.state_dir / PENDING_FILE, pending)
        self._pending = pending
        self.outbox.put(ENROL_KEY, TOPIC_ENROL, data)
        log.info(
            "enrolling %s: %d slot(s), %d agent(s) (%s)",
            self.identity.hostname,
            self.identity.slots,
            self.identity.agents,
            why,
        )

    def _read_assignments(self) -> None:
        if self._subscription is None:
            return
        while (message := self._subscription.get(timeout=0)) is not None:
            self._handle_assignment(message.data)

    def _handle_assignment(self, data: bytes) -> None:
        """Take an assignment meant for our pending enrolment; ignore everything else quietly."""
        from cooee_agent.enrolment import open_assignment

        if self._pending is None:
            return
        assignment = None
        for bundle in self.bundles:
            try:
                assignment = open_assignment(data, self.keys, bundle)
                break
            except Exception as error:  # others' assignments and garbage are routine here
                log.debug("ignoring an assignment: %s", error)
        if assignment is None:
            return
        if assignment.enrolment_nonce not in self._pending["nonces"]:
            log.debug("ignoring an assignment for enrolment %s", assignment.enrolment_nonce)
            return
        identity = self.identity
        if identity is None or (assignment.hostname, assignment.mac) != (
            identity.hostname,
            identity.mac,
        ):
            log.warning("ignoring an assignment for another host (%s)", assignment.hostname)
            return
        write_json(
            self.state_dir / ASSIGNMENT_FILE,
            {
                "identity": self._pending["identity"],
                "received_at": _iso(self._wall()),
                "assignment": assignment.to_dict(),
            },
        )
        assert self.outbox is not None
        self.outbox.ack(ENROL_KEY)
        (self.state_dir / PENDING_FILE).unlink(missing_ok=True)
        previous = self.assignment
        self.assignment = assignment
        self._assignment_identity = self._pending["identity"]
        self._pending = None
        self._enrolling_since = None
        tokens = ", ".join(f"{s.slot}:{s.token}" for s in assignment.slots)
        log.info(
            "enrolled as host %d, %d slot(s): %s",
            assignment.host_id,
            len(assignment.slots),
            tokens,
            extra={"COOEE_HOST_ID": assignment.host_id},
        )
        if previous is not None and previous.host_id != assignment.host_id:
            log.warning("host_id changed from %d to %d", previous.host_id, assignment.host_id)
        self._heartbeat_soon()

    def _load_assignment(self) -> None:
        from cooee_agent.enrolment import Assignment, b64

        stored = read_json(self.state_dir / ASSIGNMENT_FILE)
        if not isinstance(stored, dict):
            return
        try:
            assignment = Assignment.from_dict(stored.get("assignment"))
        except Exception as error:
            log.warning("ignoring the stored assignment: %s", error)
            return
        if assignment.agent_key != b64.encode(self.keys.verify_key):
            log.warning("the stored assignment is for another agent key; enrolling again")
            return
        self.assignment = assignment
        self._assignment_identity = stored.get("identity")

    # -- outbox --------------------------------------------------------------------------------

    def _pump(self) -> None:
        """Publish what is due. Enrolments stay until their assignment arrives (re-sealed when
        half the Leader's freshness window has passed); intervention calls leave after one
        publish that reached a peer on their topic (see agent.intervention). While no peer has
        joined an item's topic nothing is published and no backoff is spent: the first send
        goes out as soon as the mesh connects."""
        from cooee_agent.enrolment.sealing import DEFAULT_WINDOW

        assert self.outbox is not None and self.transport is not None
        half_window = DEFAULT_WINDOW.max_age_s / 2
        for item in self.outbox.due():
            reached = self._topic_peers(item.topic)
            if reached == 0:
                continue
            data = item.data
            age = self._wall() - item.created_at
            if item.key == ENROL_KEY and age > half_window and self.identity is not None:
                self._enrol("re-sealed: the pending one is about to go stale")
                refreshed = self.outbox.get(ENROL_KEY)
                data = refreshed.data if refreshed is not None else data
            elif item.key.startswith(calls.KEY_PREFIX) and age > half_window:
                data = calls.refreshed(data, self.keys)
                self.outbox.put(item.key, item.topic, data)
            try:
                self.transport.publish(item.topic, data)
            except CooeeError as error:
                log.warning("publishing %s failed: %s", item.key, error)
                self.outbox.mark_sent(item.key)
                continue
            if item.key.startswith(calls.KEY_PREFIX):
                self.outbox.ack(item.key)
                log.info("intervention call %s sent to %d peer(s)", item.key, reached)
            else:
                self.outbox.mark_sent(item.key)
                log.debug("sent %s to %d peer(s)", item.key, reached)

    def _topic_peers(self, topic: str) -> int:
        assert self.transport is not None
        topic_peers = getattr(self.transport, "topic_peers", None)
        try:
            return len(topic_peers(topic) if topic_peers else self.transport.peers())
        except CooeeError:
            return 0

    # -- heartbeat -----------------------------------------------------------------------------

    def _heartbeat_soon(self) -> None:
        self._next_heartbeat = self._clock()

    def _maybe_heartbeat(self) -> None:
        if self.assignment is None or self.inventory is None or self._next_heartbeat is None:
            return
        if self._clock() < self._next_heartbeat:
            return
        self._next_heartbeat = self._clock() + self.config.heartbeat.delay(self._rng())
        self.heartbeat()

    def heartbeat(self) -> Announcement | None:
        """Sample usage, sign and publish one availability record; never raises."""
        from cooee_agent.enrolment import seal_plain

        assert self.transport is not None and self.inventory is not None
        try:
            usage = self._usage_probe()
        except Exception as error:  # the probe factory should not raise; if it does, degrade
            log.warning("usage probe crashed: %s", error, exc_info=True)
            usage = Usage((), (), (), gpus_probed=False)
        seq = self.sequence.next()
        installed = self.identity.installed if self.identity is not None else ()
        announcement = availability(
            self.assignment,
            self.inventory,
            usage,
            installed,
            seq=seq,
            interval_s=self.config.heartbeat.interval,
            issued_at=_iso(self._wall()),
        )
        self._note_state(announcement)
        try:
            data = seal_plain(announcement.record, self.keys.signing, self.keys.agent_id)
            self.transport.publish(TOPIC_AVAILABILITY, data)
        except CooeeError as error:
            log.warning("heartbeat %d not sent: %s", seq, error)
            return announcement
        self.last_heartbeat = {
            "at": _iso(self._wall()),
            "seq": seq,
            "state": announcement.state,
            "reasons": list(announcement.reasons),
        }
        log.debug("heartbeat %d: %s", seq, announcement.state)
        return announcement

    def _note_state(self, announcement: Announcement) -> None:
        if announcement.state != self.state or announcement.reasons != self.reasons:
            if announcement.state == "degraded":
                log.warning("degraded: %s", "; ".join(announcement.reasons))
            else:
                log.info("state %s", announcement.state)
        self.state, self.reasons = announcement.state, announcement.reasons
        if self.state == "degraded":
            if self._degraded_since is None:
                self._degraded_since = self._clock()
        else:
            self._degraded_since, self._degraded_called = None, False
        for gpu_id in announcement.lost:
            if gpu_id not in self._lost_called:
                self._lost_called.add(gpu_id)
                self.call("gpu-lost", f"GPU {gpu_id} is no longer seen", severity="critical")
                self.request_rediscovery(f"GPU {gpu_id} lost")
        self._lost_called &= set(announcement.lost)

    def _publish_leaving(self) -> None:
        from cooee_agent.enrolment import seal_plain

        assert self.transport is not None
        try:
            record = leaving(
                self.assignment.host_id, seq=self.sequence.next(), issued_at=_iso(self._wall())
            )
            reached = self._topic_peers(TOPIC_AVAILABILITY)
            self.transport.publish(
                TOPIC_AVAILABILITY, seal_plain(record, self.keys.signing, self.keys.agent_id)
            )
            log.info("announced leaving (seq %d) to %d peer(s)", record["seq"], reached)
            if reached:
                time.sleep(LEAVING_GRACE)  # the publish is queued; give it time on the wire
        except Exception as error:
            log.warning("could not announce leaving: %s", error)

    # -- interventions -------------------------------------------------------------------------

    def call(self, reason: str, detail: str, *, severity: str = "warning") -> str | None:
        """Queue a signed intervention call; the pump publishes it. Returns its outbox key."""
        assert self.outbox is not None
        hostname = self.identity.hostname if self.identity is not None else None
        if hostname is None and self.assignment is not None:
            hostname = self.assignment.hostname
        try:
            record = calls.intervention_record(
                hostname=hostname or _local_hostname(),
                host_id=self.assignment.host_id if self.assignment is not None else None,
                reason=reason,
                detail=detail,
                severity=severity,
            )
            return calls.queue_intervention(self.outbox, self.keys, record)
        except CooeeError as error:
            log.error("could not queue the intervention call %s: %s", reason, error)
            return None

    def _maybe_call(self) -> None:
        threshold = self.config.degraded_threshold
        now = self._clock()
        if (
            self._degraded_since is not None
            and not self._degraded_called
            and now - self._degraded_since >= threshold
        ):
            self._degraded_called = True
            self.call(
                "degraded",
                f"degraded for {now - self._degraded_since:.0f} s: " + "; ".join(self.reasons),
            )
        if (
            self._pending is not None
            and self._enrolling_since is not None
            and not self._pending_called
            and now - self._enrolling_since >= threshold
        ):
            self._pending_called = True
            self.call(
                "enrolment-pending",
                f"no assignment after {now - self._enrolling_since:.0f} s; the Leader may be "
                "holding this enrolment for approval (leader approve) or be unreachable",
            )

    # -- reload --------------------------------------------------------------------------------

    def _maybe_reload(self) -> None:
        if not self._reload.is_set():
            return
        self._reload.clear()
        if self._config_loader is None:
            log.info("SIGHUP: no configuration file to reload")
            return
        self._notifier.reloading()
        try:
            new = self._config_loader()
        except ConfigError as error:
            log.error("reload refused, keeping the running configuration: %s", error)
            self._notifier.ready(self.status_line())
            return
        self.apply_config(new)
        self._notifier.ready(self.status_line())

    def apply_config(self, new: Config) -> list[str]:
        """Apply what can change while running; returns what was applied (also logged)."""
        old, applied = self.config, []
        if new.log_level != old.log_level:
            logging.getLogger().setLevel(new.log_level.upper())
            applied.append(f"log_level={new.log_level}")
        if new.heartbeat != old.heartbeat:
            applied.append(
                f"heartbeat interval={new.heartbeat.interval:g}s jitter={new.heartbeat.jitter:g}"
            )
        if new.degraded_threshold != old.degraded_threshold:
            applied.append(f"degraded_threshold={new.degraded_threshold:g}s")
        if new.join_token != old.join_token:
            applied.append("join_token (used by the next enrolment)")
        restart = [
            name
            for name, before, after in (
                ("state_dir", old.state_dir, new.state_dir),
                ("[leader]", old.leader, new.leader),
                ("[mesh]", old.mesh, new.mesh),
            )
            if before != after
        ]
        self.config = dataclasses.replace(
            old,
            log_level=new.log_level,
            heartbeat=new.heartbeat,
            degraded_threshold=new.degraded_threshold,
            join_token=new.join_token,
            ollama=new.ollama,
        )
        if new.heartbeat != old.heartbeat and self._next_heartbeat is not None:
            self._next_heartbeat = self._clock() + self.config.heartbeat.delay(self._rng())
        if new.ollama != old.ollama:
            applied.append(f"ollama host={new.ollama.host}")
            self._usage_probe = self._usage_factory(self.config)
            self._stop_watchers()
            self._start_watchers()
            self.request_rediscovery("Ollama host changed")
        log.info("configuration reloaded; applied: %s", ", ".join(applied) or "nothing changed")
        if restart:
            log.warning("changes to %s take effect after a restart", ", ".join(restart))
        return applied

    # -- watchers ------------------------------------------------------------------------------

    def _start_watchers(self) -> None:
        try:
            self._watchers = list(self._watcher_factory(self))
        except Exception:
            log.warning("change watchers unavailable", exc_info=True)
            self._watchers = []
        started = []
        for watcher in self._watchers:
            try:
                watcher.start()
                started.append(watcher)
            except Exception as error:
                log.warning("%s not started: %s", type(watcher).__name__, error)
        self._watchers = started

    def _stop_watchers(self) -> None:
        for watcher in self._watchers:
            try:
                watcher.stop()
            except Exception:
                log.debug("stopping %s failed", type(watcher).__name__, exc_info=True)
        self._watchers = []

    # -- status --------------------------------------------------------------------------------

    def status(self, *, stopped: bool = False) -> dict[str, Any]:
        peers: list[str] = []
        if self.transport is not None:
            try:
                peers = self.transport.peers()
            except CooeeError:
                peers = []
        assignment = self.assignment
        return {
            "schema": STATUS_SCHEMA,
            "pid": os.getpid(),
            "running": not stopped,
            "updated_at": self._wall(),
            "updated": _iso(self._wall()),
            "enrolment": self.enrolment_state,
            "agent_id": getattr(getattr(self, "keys", None), "agent_id", None),
            "peer_id": self.transport.peer_id if self.transport is not None else None,
            "host_id": assignment.host_id if assignment is not None else None,
            "hostname": self.identity.hostname if self.identity is not None else None,
            "tokens": [
                {"slot": s.slot, "gpu_id": s.gpu_id, "token": s.token}
                for s in (assignment.slots if assignment is not None else ())
            ],
            "agents": self.identity.agents if self.identity is not None else 0,
            "identity_error": self.identity_error,
            "state": self.state,
            "reasons": list(self.reasons),
            "peers": len(peers),
            "last_heartbeat": self.last_heartbeat,
            "heartbeat_interval_s": self.config.heartbeat.interval,
            "outbox_depth": self.outbox.depth() if self.outbox is not None else None,
        }

    def write_status(self, *, stopped: bool = False) -> None:
        write_json(self.state_dir / STATUS_FILE, self.status(stopped=stopped))

    def status_line(self) -> str:
        state = self.enrolment_state
        if self.assignment is not None:
            slots = len(self.assignment.slots)
            text = f"enrolled as host {self.assignment.host_id}, {slots} slot(s)"
            if state != "enrolled":
                text += f" ({state} again)"
        elif self.identity_error is not None:
            text = f"no identity: {self.identity_error}"
        else:
            text = state
        if self.last_heartbeat is not None:
            text += (
                f", last heartbeat {self.last_heartbeat['at']} "
                f"(seq {self.last_heartbeat['seq']}, {self.last_heartbeat['state']})"
            )
        return text

    def _notify_status(self) -> None:
        line = self.status_line()
        if line != self._last_status_line:
            self._last_status_line = line
            self._notifier.status(line)


# -- helpers ---------------------------------------------------------------------------------------


def leader_bundles(config: Config) -> list[Any]:
    """The configured Leader bundles; ConfigError (exit 2) when there is none."""
    from cooee_agent.enrolment import parse_bundle

    if not config.leader.keys:
        where = config.source or "the configuration"
        raise ConfigError(
            f"{where}: [leader] keys is empty; "
            "add the bundle printed by `cooee-agent leader keygen`"
        )
    try:
        return [parse_bundle(text) for text in config.leader.keys]
    except CooeeError as error:
        raise ConfigError(f"[leader] keys: {error}") from error


def sealing_bundle(bundles: Sequence[Any]) -> Any:
    """One bundle sealing to every configured recipient (several during a key rotation)."""
    from cooee_agent.enrolment import LeaderBundle

    recipients = tuple(dict.fromkeys(r for bundle in bundles for r in bundle.recipients))
    return LeaderBundle(verify_key=bundles[-1].verify_key, recipients=recipients)


def identity_of(inventory: Inventory, tuples: Sequence[Any], keys: Any, bundles: Any) -> Identity:
    """The parts of an enrolment whose change calls for a new one (DiscoveryError if none)."""
    from cooee_agent.enrolment import b64, build_enrolment

    record = build_enrolment(inventory, tuples, keys, nonce="0" * 32)
    value = {
        "agent": b64.encode(keys.verify_key),
        "leaders": sorted(b64.encode(bundle.verify_key) for bundle in bundles),
        "hostname": record.host.hostname,
        "mac": record.host.mac,
        "slots": [[slot.slot, slot.gpu_id] for slot in record.slots],
        "agents": sorted(agent.key for agent in record.agents),
    }
    digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
    return Identity(
        digest=digest,
        hostname=record.host.hostname,
        mac=record.host.mac,
        slots=len(record.slots),
        agents=len(record.agents),
        installed=tuple(sorted({agent.tuple.model for agent in record.agents})),
    )


def _local_hostname() -> str:
    from cooee_agent.discovery.host import hostname
    from cooee_agent.identity.canonical import normalise_hostname

    try:
        return normalise_hostname(hostname())
    except CooeeError:
        return "unknown"


# -- production wiring -------------------------------------------------------------------------


def real_discover(config: Config) -> Inventory:
    from cooee_agent.discovery.inventory import discover

    return discover(ollama_host=config.ollama.host)


def real_usage(config: Config) -> UsageProbe:
    from cooee_agent.agent.usage import default_gpu_probe, ollama_loaded, usage_probe

    return usage_probe(default_gpu_probe(), ollama_loaded(config.ollama.host))


def real_transport(config: Config) -> Transport:
    from cooee_agent.bus.libp2p_mesh import MeshConfig, start_mesh

    return start_mesh(MeshConfig.from_config(config))


def real_watchers(daemon: AgentDaemon) -> list[Watcher]:
    """udev (drm, net) where pyudev and netlink work, and the Ollama model poller."""
    import sys

    from cooee_agent.agent.watchers import OllamaPoller, UdevWatcher, fetch_ollama_digests

    def changed(change: Any) -> None:
        daemon.request_rediscovery(f"{change.source}: {', '.join(change.details)}")

    host = daemon.config.ollama.host
    info = daemon.inventory.ollama if daemon.inventory is not None else None
    baseline = (
        frozenset((m.name, m.digest) for m in info.models)
        if info is not None and info.source == "api"
        else None
    )
    watchers: list[Watcher] = [
        OllamaPoller(lambda: fetch_ollama_digests(host), changed, baseline=baseline)
    ]
    if sys.platform.startswith("linux"):
        watchers.append(UdevWatcher(changed))
    return watchers


def production_daemon(config: Config, config_loader: Callable[[], Config] | None) -> AgentDaemon:
    return AgentDaemon(
        config,
        transport_factory=real_transport,
        discover=real_discover,
        usage=real_usage,
        watchers=real_watchers,
        config_loader=config_loader,
    )
