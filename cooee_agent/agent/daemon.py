"""The agent daemon (``cooee-agent run``): discover, enrol, heartbeat, watch, and tell systemd.

The core is :class:`AgentDaemon`, which takes its collaborators (transport factory, discovery,
usage probe, watchers, notifier, clocks, random source) as arguments, so tests run it in-process
over a MemoryBus; :func:`production_daemon` (agent.wiring) wires the real ones. One synchronous
main loop does everything that changes state; watchers and the watchdog pinger have their own
threads and only set flags. Nothing here lets an error end the loop: each step logs and the loop
goes on. The one exception is a dead mesh, which no step can repair: the loop stops beating the
watchdog, logs it once, and the daemon exits with code 1 so that systemd restarts it.

Lifecycle: keys (state dir, 0600) -> Leader bundle (config) -> discovery -> mesh up, subscribe
to assignments -> READY=1 -> loop: read assignments, pump the outbox, heartbeat when due, raise
intervention calls, write status.json, beat the watchdog. SIGTERM: STOPPING=1, a ``leaving``
record, close. SIGHUP: reload the config (log level, heartbeat, Ollama host).

The parts: agent.enrolling (identity, enrolment and assignment), agent.heartbeats (when a
heartbeat is due, sending it), agent.watcher_set (the change watchers as a set), agent.publishing
(outbox pump, mesh liveness), agent.escalation (when to call for an operator), agent.reload (what
a SIGHUP changes), agent.report (status.json, STATUS=), agent.wiring (production collaborators,
and ``production_daemon``).
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cooee_agent.agent import intervention as calls
from cooee_agent.agent import report
from cooee_agent.agent.availability_record import Announcement, leaving
from cooee_agent.agent.enrolling import Enrolment, Identity, iso, leader_bundles
from cooee_agent.agent.escalation import Call, Escalation, local_hostname, lost_call
from cooee_agent.agent.heartbeats import Heartbeats
from cooee_agent.agent.publishing import mesh_alive, publish_plain, pump, topic_peers
from cooee_agent.agent.reach import ReachWatch
from cooee_agent.agent.reload import reload_config
from cooee_agent.agent.state import SEQUENCE_FILE, STATUS_FILE, write_json
from cooee_agent.agent.state import Sequence as SeqCounter
from cooee_agent.agent.step_failures import StepFailures
from cooee_agent.agent.submitting import Ledger, requeue_missing, take_answer
from cooee_agent.agent.systemd import Notifier
from cooee_agent.agent.usage import UsageProbe
from cooee_agent.agent.watchdog import Progress, WatchdogPinger
from cooee_agent.agent.watcher_set import Watcher, Watchers
from cooee_agent.bus.outbox import FIRST_RESEND_S, Outbox
from cooee_agent.bus.outbox_recovery import open_outbox
from cooee_agent.bus.transport import Subscription, Transport
from cooee_agent.config import Config
from cooee_agent.discovery.model import Inventory
from cooee_agent.errors import ConfigError, CooeeError
from cooee_agent.files import make_directory
from cooee_agent.protocol.kinds import topic_of

log = logging.getLogger(__name__)

REDISCOVER_RETRY = 60.0  # seconds between discovery attempts while no identity can be formed
LEAVING_GRACE = 0.5  # seconds for the leaving record to leave the process before the mesh closes
MESH_DEAD_EXIT = 1  # run()'s exit code when the mesh died under the daemon


TransportFactory = Callable[[Config], Transport]
Discover = Callable[[Config], Inventory]
UsageFactory = Callable[[Config], UsageProbe]
WatcherFactory = Callable[["AgentDaemon"], Sequence[Watcher]]
PingerFactory = Callable[[Progress], "WatchdogPinger | None"]


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
        resend_base: float = FIRST_RESEND_S,
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
        self._step_failures = StepFailures(log, clock)
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
        self.enrolment: Enrolment | None = None  # once the keys and the outbox are open
        self._subscription: Subscription | None = None
        self._answers: Subscription | None = None  # receipts and decisions of submissions
        self.ledger: Ledger | None = None
        self._watchers = Watchers()
        self._pinger: WatchdogPinger | None = None
        self.heartbeats = Heartbeats(
            usage(config), self._publish_availability, clock=clock, wall=wall, rng=rng
        )
        self._escalation = Escalation(clock)
        self.reach = ReachWatch()

        self.inventory: Inventory | None = None  # the latest discovery, identity or not
        self.identity_error: str | None = None
        self._next_discovery: float | None = None
        self._mesh_dead = False
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
    def identity(self) -> Identity | None:
        return self.enrolment.identity if self.enrolment is not None else None

    @property
    def assignment(self) -> Any:
        """The Leader's Assignment (protocol.records) once enrolled, else None."""
        return self.enrolment.assignment if self.enrolment is not None else None

    @property
    def last_heartbeat(self) -> dict[str, Any] | None:
        return self.heartbeats.last

    @property
    def state(self) -> str:
        """The state the last heartbeat announced (the worst of its slots)."""
        return self.heartbeats.state

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the last heartbeat announced the host degraded (empty otherwise)."""
        return self.heartbeats.reasons

    @property
    def enrolment_state(self) -> str:
        if self.enrolment is None:
            return "discovering"
        return self.enrolment.state(self.config.degraded_threshold)

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self, *, install_signals: bool | None = None) -> int:
        """Start, loop until stopped, shut down; returns the exit code (0 on a clean stop,
        1 when the mesh died under the daemon)."""
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
        from cooee_agent.protocol import load_or_create_agent_keys

        self.bundles = self.bundles or leader_bundles(self.config)
        make_directory(self.state_dir)
        self.keys = load_or_create_agent_keys(self.state_dir)
        log.info("agent id %s, state in %s", self.keys.agent_id, self.state_dir)
        self.outbox = open_outbox(
            self.state_dir, base_delay=self._resend_base, clock=self._wall, rng=self._rng
        )
        self.sequence = SeqCounter(self.state_dir / SEQUENCE_FILE)
        self.enrolment = Enrolment(
            self.state_dir, self.outbox, self.keys, self.bundles, clock=self._clock, wall=self._wall
        )
        self.enrolment.load_assignment()
        self._discover_now("start")
        self.transport = self._transport_factory(self.config)
        self._subscription = self.transport.subscribe(topic_of("assignment"))
        self.ledger = Ledger.open_in(self.state_dir)
        requeue_missing(self.outbox, self.ledger)
        self._answers = self.transport.subscribe(topic_of("receipt"))
        log.info("on the COOEE mesh as %s", self.transport.peer_id)
        if self.enrolment.resume_or_enrol(self.config.join_token):
            self.heartbeats.soon()
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
            if self.assignment is not None and not self._mesh_dead:
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
        if self.ledger is not None:
            self.ledger.close()
            self.ledger = None
        if self.outbox is not None:
            self.outbox.close()
            self.outbox = None
        log.info("stopped")

    def turn(self) -> None:
        """One pass of the main loop; every step is isolated so one failure skips only itself.
        A dead mesh ends the loop instead, without the beat that keeps the watchdog fed."""
        if self._check_mesh():
            return
        for step in (
            self._maybe_reload,
            self._maybe_rediscover,
            self._read_assignments,
            self._read_answers,
            self._pump,
            self._maybe_heartbeat,
            self._maybe_call,
            self.write_status,
            self._notify_status,
        ):
            try:
                step()
            except Exception as error:
                self._step_failures.failed(step.__name__, error)
            else:
                self._step_failures.succeeded(step.__name__)
        self.progress.beat()

    def _check_mesh(self) -> bool:
        """True (and the daemon stopping with exit code 1) once the mesh is dead."""
        if self._mesh_dead:
            return True
        if mesh_alive(self.transport, self._subscription):
            return False
        self._mesh_dead = True
        self.exit_code = MESH_DEAD_EXIT
        log.error(
            "the COOEE mesh has stopped under the agent (its node ended or was closed); "
            "nothing can be sent or received, so the agent exits to be restarted"
        )
        self.stop()
        return True

    def _wait(self) -> None:
        # Sleep on the assignment subscription: an arriving assignment is handled at once.
        timeout = self.tick
        to_heartbeat = self.heartbeats.seconds_to_next()
        if to_heartbeat is not None:
            timeout = min(timeout, to_heartbeat)
        if self._subscription is None or self._subscription.closed or timeout <= 0:
            self._stop.wait(timeout)
            return
        message = self._subscription.get(timeout=timeout)
        if message is not None:
            try:
                self._take_assignment(message.data)
            except Exception:
                log.exception("handling an assignment failed; carrying on")

    def _install_signals(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        signal.signal(signal.SIGINT, lambda *_: self.stop())
        signal.signal(signal.SIGHUP, lambda *_: self.request_reload())

    # -- discovery and enrolment -------------------------------------------------------------

    def _discover_now(self, why: str) -> bool:
        """Run discovery; returns True when the identity changed (so enrolment is due)."""
        assert self.enrolment is not None
        try:
            inventory = self._discover(self.config)
        except Exception as error:
            log.error("discovery failed (%s): %s", why, error, exc_info=True)
            self._next_discovery = self._clock() + REDISCOVER_RETRY
            return False
        for failure in inventory.failures:
            log.debug("probe %s: %s: %s", failure.probe, failure.reason, failure.detail)
        self.inventory = inventory
        try:
            changed = self.enrolment.identify(inventory)
        except CooeeError as error:
            if self.identity_error != str(error):
                log.error("no identity can be formed: %s", error)
            self.identity_error = str(error)
            self._next_discovery = self._clock() + REDISCOVER_RETRY
            return False
        self.identity_error = None
        self._next_discovery = None
        identity = self.enrolment.identity
        assert identity is not None
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

    def _enrol(self, why: str) -> None:
        assert self.enrolment is not None
        self.enrolment.enrol(why, self.config.join_token)

    def _read_assignments(self) -> None:
        if self._subscription is None:
            return
        while (message := self._subscription.get(timeout=0)) is not None:
            self._take_assignment(message.data)

    def _read_answers(self) -> None:
        if self._answers is None or self.ledger is None:
            return
        assert self.outbox is not None
        while (message := self._answers.get(timeout=0)) is not None:
            take_answer(message.data, self.keys, self.bundles, self.outbox, self.ledger)

    def _take_assignment(self, data: bytes) -> None:
        assert self.enrolment is not None
        if self.enrolment.take(data) is not None:
            self.heartbeats.soon()

    def _pump(self) -> None:
        assert self.outbox is not None and self.transport is not None
        pump(
            self.outbox,
            self.transport,
            self.keys,
            wall=self._wall,
            reseal_enrolment=lambda: self._enrol("re-sealed: the pending one is about to go stale"),
        )

    # -- heartbeat -----------------------------------------------------------------------------

    def _maybe_heartbeat(self) -> None:
        if self.assignment is None or self.inventory is None:
            return
        if self.heartbeats.take_due(self.config.heartbeat):
            self.heartbeat()

    def heartbeat(self) -> Announcement:
        """Send one heartbeat now, and call for an operator about a GPU it finds lost."""
        assert self.transport is not None and self.inventory is not None
        installed = self.identity.installed if self.identity is not None else ()
        announcement, sent = self.heartbeats.send(
            self.assignment,
            self.inventory,
            installed,
            seq=self.sequence.next(),
            interval_s=self.config.heartbeat.interval,
        )
        for gpu_id in self._escalation.observe(announcement.state, announcement.lost):
            self._queue(lost_call(gpu_id))
            self.request_rediscovery(f"GPU {gpu_id} lost")
        if sent:
            self.reach.after_heartbeat(self.transport)
        return announcement

    def _publish_availability(self, record: dict[str, Any]) -> None:
        assert self.transport is not None
        publish_plain(self.transport, self.keys, record)

    def _publish_leaving(self) -> None:
        assert self.transport is not None
        try:
            record = leaving(
                self.assignment.host_id, seq=self.sequence.next(), issued_at=iso(self._wall())
            )
            reached = topic_peers(self.transport, topic_of(record["kind"]))
            publish_plain(self.transport, self.keys, record)
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
                hostname=hostname or local_hostname(),
                host_id=self.assignment.host_id if self.assignment is not None else None,
                reason=reason,
                detail=detail,
                severity=severity,
            )
            return calls.queue_intervention(self.outbox, self.keys, record)
        except CooeeError as error:
            log.error("could not queue the intervention call %s: %s", reason, error)
            return None

    def _queue(self, due: Call) -> None:
        self.call(due.reason, due.detail, severity=due.severity)

    def _maybe_call(self) -> None:
        pending_since = self.enrolment.pending_since if self.enrolment is not None else None
        for due in self._escalation.due(
            self.reasons, pending_since, self.config.degraded_threshold
        ):
            self._queue(due)

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
        change = reload_config(self.config, new)
        if new.log_level != self.config.log_level:
            logging.getLogger().setLevel(new.log_level.upper())
        self.config = change.config
        if change.heartbeat_changed and self.heartbeats.next_due is not None:
            self.heartbeats.reschedule(self.config.heartbeat)
        if change.ollama_changed:
            self.heartbeats.usage_probe = self._usage_factory(self.config)
            self._stop_watchers()
            self._start_watchers()
            self.request_rediscovery("Ollama host changed")
        log.info(
            "configuration reloaded; applied: %s", ", ".join(change.applied) or "nothing changed"
        )
        if change.restart:
            log.warning("changes to %s take effect after a restart", ", ".join(change.restart))
        return list(change.applied)

    # -- watchers ------------------------------------------------------------------------------

    def _start_watchers(self) -> None:
        self._watchers.start(lambda: self._watcher_factory(self))

    def _stop_watchers(self) -> None:
        self._watchers.stop()

    # -- status --------------------------------------------------------------------------------

    def status(self, *, stopped: bool = False) -> dict[str, Any]:
        return report.status_record(self, now=self._wall(), stopped=stopped)

    def write_status(self, *, stopped: bool = False) -> None:
        # Rewritten every turn and only ever advisory: atomic, but not worth an fsync a second.
        write_json(self.state_dir / STATUS_FILE, self.status(stopped=stopped), durable=False)

    def status_line(self) -> str:
        return report.status_line(self)

    def _notify_status(self) -> None:
        line = self.status_line()
        if line != self._last_status_line:
            self._last_status_line = line
            self._notifier.status(line)
