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
import json
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime

from cooee_agent.bus.transport import MAX_MESSAGE_BYTES, Message, Subscription, Transport
from cooee_agent.errors import TransportError
from cooee_agent.leader.calls import CallBook
from cooee_agent.leader.handled import Handled, Handler
from cooee_agent.leader.registrar import IngestResult, Registrar
from cooee_agent.protocol.kinds import KINDS, LEADER_TOPICS, TOPIC_KINDS

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def envelope_validator(topic: str, data: bytes, from_peer: str) -> bool:
    """Mesh validator: drop what is not even shaped like an envelope of this topic, cheaply
    (no signature or decryption; the handlers verify). A dropped message is not relayed."""
    kinds = TOPIC_KINDS.get(topic)
    if kinds is None or len(data) > MAX_MESSAGE_BYTES or not data.startswith(b"{"):
        return False
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return False
    return (
        isinstance(value, dict)
        and value.get("v") == 1
        and value.get("kind") in kinds
        and isinstance(value.get("sig"), str)
        and isinstance(value.get("sender"), str)
        and "body" in value
    )


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
        clock: Clock = _utcnow,
        offline_after: float | None = None,
        resend_gap_s: float = 1.0,
    ) -> None:
        self.registrar = registrar
        self.transport = transport
        self.calls = calls
        self.clock = clock
        self.offline_after = offline_after
        self.resend_gap_s = resend_gap_s
        self._resent: OrderedDict[bytes, float] = OrderedDict()
        self._handlers = topic_handlers()
        self._subscriptions: dict[str, Subscription] = {
            topic: transport.subscribe(topic) for topic in LEADER_TOPICS
        }

    # -- handling ------------------------------------------------------------------------------

    def handle(self, message: Message) -> Handled:
        """Handle one message by its topic's handler in the kinds table; logs and swallows every
        failure so no message stops the Leader."""
        handler = self._handlers.get(message.topic)
        if handler is None:
            return Handled(message.topic, "ignored")
        try:
            return handler(self, message)
        except Exception:
            log.exception(
                "failed to handle a message on %s from %s", message.topic, message.from_peer
            )
            return Handled(message.topic, "error")

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
        handled = []
        progress = True
        while progress:
            progress = False
            for subscription in self._subscriptions.values():
                message = subscription.get(timeout=0)
                if message is not None:
                    handled.append(self.handle(message))
                    progress = True
        return handled

    def run(
        self,
        stop: threading.Event,
        *,
        tick_s: float = 1.0,
        beat: Callable[[], None] = lambda: None,
    ) -> None:
        """Serve until ``stop`` is set: messages in arrival order, an offline sweep every tick.

        ``beat`` is called at least once a tick while the loop turns (a supervisor's watchdog
        listens to it: a loop stuck in a handler stops beating).

        Raises TransportError (within a tick) once the transport can carry nothing more: its
        node died or its subscriptions were closed underneath the dispatcher. A Leader without a
        network must not look healthy; its supervisor restarts it.
        """
        inbox: queue.Queue[Message] = queue.Queue()
        pumps = [
            threading.Thread(
                target=_pump, args=(sub, inbox, stop), name=f"leader-{topic}", daemon=True
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
                next_sweep = time.monotonic() + tick_s
            try:
                message = inbox.get(timeout=max(0.0, min(tick_s, next_sweep - time.monotonic())))
            except queue.Empty:
                continue
            self.handle(message)

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


def _pump(subscription: Subscription, inbox: queue.Queue[Message], stop: threading.Event) -> None:
    while not stop.is_set():
        message = subscription.get(timeout=0.5)
        if message is not None:
            inbox.put(message)
        elif subscription.closed:
            return
