"""An in-process COOEE channel for unit tests: same interface and limits as the mesh, no network.

    bus = MemoryBus()
    agent = bus.join("agent-1")
    leader = bus.join("leader", validator=my_check)
    sub = leader.subscribe(TOPIC_ENROL)
    agent.publish(TOPIC_ENROL, b"...")
    sub.get(timeout=1.0)  # Message(topic, data, from_peer="agent-1")

``bus.partition(peer)`` / ``bus.heal(peer)`` cut and restore one transport's delivery both ways,
to test retries without real processes.
"""

from __future__ import annotations

import threading

from cooee_agent.bus.limits import PeerRateLimiter, RateLimit
from cooee_agent.bus.transport import (
    MAX_MESSAGE_BYTES,
    Message,
    Subscription,
    Validator,
    check_outbound,
    run_validator,
)
from cooee_agent.errors import TransportError

DEFAULT_PEER_LIMIT = RateLimit(rate=200.0, burst=1000.0)


class MemoryBus:
    """The shared medium; every transport joined to it sees every other."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._members: dict[str, MemoryTransport] = {}
        self._cut: set[str] = set()

    def join(
        self,
        peer_id: str,
        *,
        validator: Validator | None = None,
        peer_limit: RateLimit = DEFAULT_PEER_LIMIT,
    ) -> MemoryTransport:
        with self._lock:
            if peer_id in self._members:
                raise TransportError(f"peer {peer_id!r} already joined this bus")
            transport = MemoryTransport(self, peer_id, validator, peer_limit)
            self._members[peer_id] = transport
            return transport

    def partition(self, peer_id: str) -> None:
        with self._lock:
            self._cut.add(peer_id)

    def heal(self, peer_id: str) -> None:
        with self._lock:
            self._cut.discard(peer_id)

    def _leave(self, peer_id: str) -> None:
        with self._lock:
            self._members.pop(peer_id, None)
            self._cut.discard(peer_id)

    def _receivers(self, sender: str) -> list[MemoryTransport]:
        with self._lock:
            if sender in self._cut:
                return []
            return [
                member
                for peer, member in self._members.items()
                if peer != sender and peer not in self._cut
            ]

    def _peers_of(self, peer_id: str) -> list[str]:
        with self._lock:
            if peer_id in self._cut:
                return []
            return sorted(p for p in self._members if p != peer_id and p not in self._cut)


class MemoryTransport:
    """One peer on a MemoryBus."""

    def __init__(
        self, bus: MemoryBus, peer_id: str, validator: Validator | None, peer_limit: RateLimit
    ) -> None:
        self._bus = bus
        self._peer_id = peer_id
        self._validator = validator
        self._limiter = PeerRateLimiter(peer_limit)
        self._lock = threading.Lock()
        self._subscriptions: dict[str, list[Subscription]] = {}
        self._closed = False

    @property
    def peer_id(self) -> str:
        return self._peer_id

    def publish(self, topic: str, data: bytes) -> None:
        if self._closed:
            raise TransportError("transport is closed")
        check_outbound(topic, data)
        for receiver in self._bus._receivers(self._peer_id):
            receiver._receive(Message(topic=topic, data=bytes(data), from_peer=self._peer_id))

    def inject(self, message: Message) -> None:
        """Deliver a message as if it came off the wire, bypassing the sender's checks (tests)."""
        self._receive(message)

    def subscribe(self, topic: str) -> Subscription:
        if self._closed:
            raise TransportError("transport is closed")
        subscription = Subscription(topic, on_close=self._forget)
        with self._lock:
            self._subscriptions.setdefault(topic, []).append(subscription)
        return subscription

    def peers(self) -> list[str]:
        return [] if self._closed else self._bus._peers_of(self._peer_id)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._bus._leave(self._peer_id)
        with self._lock:
            subscriptions = [s for subs in self._subscriptions.values() for s in subs]
        for subscription in subscriptions:
            subscription.close()

    def _forget(self, subscription: Subscription) -> None:
        with self._lock:
            subs = self._subscriptions.get(subscription.topic, [])
            if subscription in subs:
                subs.remove(subscription)

    def _receive(self, message: Message) -> None:
        if self._closed or len(message.data) > MAX_MESSAGE_BYTES:
            return
        if not self._limiter.allow(message.from_peer):
            return
        if not run_validator(self._validator, message.topic, message.data, message.from_peer):
            return
        with self._lock:
            subscriptions = list(self._subscriptions.get(message.topic, ()))
        for subscription in subscriptions:
            subscription.deliver(message)
