"""The Leader as a COOEE peer: answers enrolments with assignments, tracks availability, keeps the
calls for intervention. The transport is injected (the libp2p mesh, or a MemoryBus in tests).

    dispatcher = Dispatcher(registrar, transport, calls=book)   # subscribes at once
    service.run(stop_event)            # blocking: handles messages, marks silent hosts offline
    # or, step by step (tests):
    dispatcher.drain(); dispatcher.sweep()

Every message is handled on the thread that runs the dispatcher, so the SQLite connections of the
Leader and the call book are only ever used by one thread at a time.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from cooee_agent.bus.transport import Message, Subscription, Transport
from cooee_agent.errors import TransportError
from cooee_agent.leader.calls import CallBook
from cooee_agent.leader.clones import CloneWatch
from cooee_agent.leader.handled import Handled, Handler
from cooee_agent.leader.precheck import precheck
from cooee_agent.leader.registrar import IngestResult, Registrar, report_limits
from cooee_agent.leader.submission_book import SubmissionBook
from cooee_agent.leader.tally import HandledTally
from cooee_agent.log_limit import flush_due
from cooee_agent.protocol.kinds import KINDS, LEADER_TOPICS, TOPIC_KINDS

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def envelope_validator(topic: str, data: bytes, from_peer: str) -> bool:
    """Mesh validator: drop what is not even shaped like an envelope of this topic, cheaply
    (no signature or decryption; the handlers verify). A dropped message is not relayed.
    ``precheck.PrecheckDrops`` is the same check, counting its drops."""
    return precheck(topic, data) is None


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Dispatcher:
    """One Leader on one transport. ``offline_after`` None: three of each host's intervals."""

    def __init__(
        self,
        registrar: Registrar,
        transport: Transport,
        *,
        calls: CallBook | None = None,
        submissions: SubmissionBook | None = None,
        clock: Clock = _utcnow,
        offline_after: float | None = None,
        resend_gap_s: float = 1.0,
    ) -> None:
        self.registrar = registrar
        self.transport = transport
        self.calls = calls
        self.submissions = submissions
        self.clock = clock
        self.offline_after = offline_after
        self.resend_gap_s = resend_gap_s
        self._resent: OrderedDict[bytes, float] = OrderedDict()
        self.tally = HandledTally()  # what was handled, by topic and outcome (for /metrics)
        self.clones = CloneWatch()  # two live agents with one host's key (availability)
        self._handlers = topic_handlers()
        self._queues = {topic: TopicQueue(topic) for topic in LEADER_TOPICS}
        self._ready = threading.Condition()
        self._mesh_drops_told: dict[str, int] = {}
        self._subscriptions: dict[str, Subscription] = {
            topic: transport.subscribe(topic) for topic in LEADER_TOPICS
        }

    # -- handling ------------------------------------------------------------------------------

    def handle(self, message: Message) -> Handled:
        """Handle one message (a batch of one)."""
        (handled,) = self.handle_batch(message.topic, [message])
        return handled

    def handle_batch(self, topic: str, messages: Sequence[Message]) -> list[Handled]:
        """Handle messages of one topic by the handler the kinds table names for it; logs and
        swallows every failure so no message stops the Leader."""
        handler = self._handlers.get(topic)
        if handler is None:
            handled = [Handled(topic, "ignored") for _ in messages]
        else:
            try:
                handled = handler(self, messages)
            except Exception:
                log.exception("failed to handle %d message(s) on %s", len(messages), topic)
                handled = [Handled(topic, "error") for _ in messages]
        if len(handled) != len(messages):
            log.error("the handler of %s answered %d of %d", topic, len(handled), len(messages))
        for outcome in handled:
            self.tally.add(outcome)
        return handled

    def dropped(self) -> dict[str, int]:
        """Messages dropped so far per topic because its queue was full."""
        return {topic: queue.dropped for topic, queue in self._queues.items()}

    def publish(self, topic: str, data: bytes) -> None:
        """Send an answer on the channel (raises TransportError)."""
        self.transport.publish(topic, data)

    def may_send(self, result: IngestResult) -> bool:
        """A resend is answered at most once per ``resend_gap_s`` per assignment, so a peer that
        replays an enrolment at a high rate cannot make the Leader flood the mesh."""
        if not result.resend:
            return True
        assert result.assignment_envelope is not None
        digest = hashlib.sha256(result.assignment_envelope).digest()
        now = time.monotonic()
        last = self._resent.pop(digest, None)
        if last is not None and now - last < self.resend_gap_s:
            self._resent[digest] = last
            return False
        self._resent[digest] = now
        while len(self._resent) > 4096:
            self._resent.popitem(last=False)
        return True

    def sweep(self) -> list[tuple[int, str]]:
        """Mark offline the hosts silent past their deadline; returns their (host_id, hostname)."""
        gone = self.registrar.registry.sweep_offline(self.clock())
        for host_id, hostname in gone:
            log.warning("host_id %d (%s) is offline: no heartbeat in time", host_id, hostname)
        return gone

    # -- loops ---------------------------------------------------------------------------------

    def drain(self) -> list[Handled]:
        """Handle every message already received, without waiting (tests step with this)."""
        for topic, subscription in self._subscriptions.items():
            while (message := subscription.get(timeout=0)) is not None:
                self._queues[topic].put(message)
        handled: list[Handled] = []
        while batch := self._serve_round():
            handled += batch
        return handled

    def _serve_round(self) -> list[Handled]:
        """One turn for every topic with work waiting, at most its kind's batch each: a burst of
        one kind delays the others by one batch, never by the whole burst."""
        handled: list[Handled] = []
        for topic, waiting in self._queues.items():
            messages = waiting.take(topic_batch(topic))
            if messages:
                handled += self.handle_batch(topic, messages)
        return handled

    def _receive(self, topic: str, message: Message) -> None:
        """Called by the pump threads: queue the message and wake the serving loop."""
        with self._ready:
            self._queues[topic].put(message)
            self._ready.notify()

    def run(
        self,
        stop: threading.Event,
        *,
        tick_s: float = 1.0,
        beat: Callable[[], None] = lambda: None,
    ) -> None:
        """Serve until ``stop`` is set: each topic's messages in arrival order, the topics in
        turn, an offline sweep every tick.

        ``beat`` is called at least once a tick while the loop turns (a supervisor's watchdog
        listens to it: a loop stuck in a handler stops beating).

        Raises TransportError (within a tick) once the transport can carry nothing more: its
        node died or its subscriptions were closed underneath the dispatcher. A Leader without a
        network must not look healthy; its supervisor restarts it.
        """
        pumps = [
            threading.Thread(
                target=_pump, args=(sub, self._receive, stop), name=f"leader-{topic}", daemon=True
            )
            for topic, sub in self._subscriptions.items()
        ]
        for pump in pumps:
            pump.start()
        next_sweep = 0.0
        while not stop.is_set():
            beat()
            if not self._transport_alive():
                raise TransportError(
                    "the COOEE mesh has stopped under the Leader (its node ended); "
                    "nothing can be received, so the Leader exits to be restarted"
                )
            if time.monotonic() >= next_sweep:
                try:
                    self.sweep()
                except Exception:
                    log.exception("offline sweep failed")
                self.report_drops()
                report_limits(self)
                flush_due()  # counts of refusals not logged one by one
                next_sweep = time.monotonic() + tick_s
            with self._ready:
                if not any(self._queues.values()):
                    self._ready.wait(timeout=max(0.0, min(tick_s, next_sweep - time.monotonic())))
            self._serve_round()

    def report_drops(self) -> None:
        # Once per tick at most, and only when something was dropped since the last report: a
        # log line, and a Leader call (folded into one open call) so 'leader calls' shows it.
        for waiting in self._queues.values():
            fresh = waiting.take_unreported_drops()
            if fresh:
                detail = (
                    f"dropped {fresh} message(s) on {waiting.topic}: its queue of "
                    f"{waiting.limit} was full ({waiting.dropped} since the Leader started)"
                )
                self.warn_operator("inbound-dropped", detail)
        self._report_mesh_drops()

    def _report_mesh_drops(self) -> None:
        # What the mesh node refused (size, rates) or could not queue for a slow peer: its own
        # log lines are summaries a minute; this puts them where 'leader calls' shows them.
        counts = getattr(self.transport, "drop_counts", None)
        if counts is None:
            return
        totals: dict[str, int] = counts()
        fresh = {
            reason: total - self._mesh_drops_told.get(reason, 0)
            for reason, total in sorted(totals.items())
            if total > self._mesh_drops_told.get(reason, 0)
        }
        if fresh:
            self._mesh_drops_told = dict(totals)
            detail = "the mesh node dropped " + ", ".join(
                f"{n} message(s): {reason} ({totals[reason]} since the Leader started)"
                for reason, n in fresh.items()
            )
            self.warn_operator("mesh-dropped", detail)

    def warn_operator(self, reason: str, detail: str) -> None:
        """A warning about the Leader itself: a log line, and a call (folded into the open one
        of the same reason) so that 'leader calls' shows it."""
        log.warning("%s", detail)
        if self.calls is not None:
            self.calls.record_leader_call(
                hostname="leader",
                mac=None,
                host_id=None,
                severity="warning",
                reason=reason,
                detail=detail,
                now=self.clock(),
            )

    def _transport_alive(self) -> bool:
        # Only the mesh transport reports ``alive``; a transport without it cannot die.
        if getattr(self.transport, "alive", True) is False:
            return False
        return not any(s.closed for s in self._subscriptions.values())

    def close(self) -> None:
        for subscription in self._subscriptions.values():
            subscription.close()


def topic_handlers() -> dict[str, Handler]:
    """Each topic the Leader reads, with the handler the kinds table names for its kinds. The
    kinds sharing a topic share a handler: it opens the envelope and tells them apart."""
    handlers: dict[str, Handler] = {}
    for topic in LEADER_TOPICS:
        named = {KINDS[kind].handler for kind in TOPIC_KINDS[topic]} - {None}
        if len(named) != 1:
            raise TypeError(f"the kinds on {topic} name {len(named)} handlers; they must share one")
        module, _, function = str(named.pop()).partition(":")
        handlers[topic] = getattr(importlib.import_module(module), function)
    return handlers


def topic_batch(topic: str) -> int:
    return max(KINDS[kind].batch for kind in TOPIC_KINDS[topic])


class TopicQueue:
    """The Leader's waiting messages of one topic, bounded by its kinds' ``queue``: past it the
    oldest is dropped and counted, so a flood of one kind costs that kind, not the others."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.limit = max(KINDS[kind].queue for kind in TOPIC_KINDS[topic])
        self._messages: deque[Message] = deque()
        self._lock = threading.Lock()
        self.dropped = 0
        self._reported = 0

    def put(self, message: Message) -> None:
        with self._lock:
            if len(self._messages) >= self.limit:
                self._messages.popleft()
                self.dropped += 1
            self._messages.append(message)

    def take(self, most: int) -> list[Message]:
        with self._lock:
            return [self._messages.popleft() for _ in range(min(most, len(self._messages)))]

    def take_unreported_drops(self) -> int:
        with self._lock:
            fresh, self._reported = self.dropped - self._reported, self.dropped
            return fresh

    def __len__(self) -> int:
        return len(self._messages)


def _pump(
    subscription: Subscription, receive: Callable[[str, Message], None], stop: threading.Event
) -> None:
    while not stop.is_set():
        message = subscription.get(timeout=0.5)
        if message is not None:
            receive(subscription.topic, message)
        elif subscription.closed:
            return
