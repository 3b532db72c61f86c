"""The COOEE channel's transport interface: topics, limits, messages and the Transport protocol.

Every implementation (``memory.MemoryTransport`` for tests, ``mesh_transport.MeshTransport`` for the
real mesh) carries opaque bytes by topic and has the same synchronous surface::

    transport.publish(TOPIC_ENROL, envelope_bytes)      # fire-and-forget; raises TransportError
    sub = transport.subscribe(TOPIC_ASSIGNMENT)          # before publishing what it answers
    message = sub.get(timeout=5.0)                       # Message or None on timeout
    for message in sub: ...                              # blocks; ends when the transport closes
    transport.peers()                                    # peer ids currently connected
    transport.close()

Subscribers see messages from *other* peers only, never their own. Delivery is not confirmed:
the application confirms it (see ``outbox.Outbox``).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from cooee_agent.protocol.kinds import (
    TOPICS,  # the protocol names the topics; the bus carries bytes
)

logger = logging.getLogger(__name__)

# The envelope contract (docs/PROTOCOL.md, section 8): nothing larger goes over the wire.
MAX_MESSAGE_BYTES = 64 * 1024

# A subscriber that stops reading loses the newest messages past this depth, not the process.
SUBSCRIPTION_DEPTH = 10_000


@dataclass(frozen=True, slots=True)
class Message:
    """One message received on a topic; ``from_peer`` is the originator's peer id (base58)."""

    topic: str
    data: bytes
    from_peer: str


# Called for every inbound message before it is delivered or relayed; False (or an exception)
# drops it. It runs on the transport's own thread, so it must be quick and must not block.
Validator = Callable[[str, bytes, str], bool]


class Subscription:
    """A thread-safe queue of inbound messages for one topic."""

    _CLOSED = object()

    def __init__(self, topic: str, on_close: Callable[[Subscription], None] | None = None) -> None:
        self.topic = topic
        self._queue: queue.Queue[object] = queue.Queue(maxsize=SUBSCRIPTION_DEPTH)
        self._on_close = on_close
        self._closed = threading.Event()

    def deliver(self, message: Message) -> None:
        """Called by the transport; never blocks."""
        if self._closed.is_set():
            return
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            logger.warning("subscription %s is full; dropping a message", self.topic)

    def get(self, timeout: float | None = None) -> Message | None:
        """The next message, or None on timeout or once the subscription is closed."""
        if self._closed.is_set() and self._queue.empty():
            return None
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is self._CLOSED:
            self._queue.put_nowait(self._CLOSED)  # wake any other reader too
            return None
        assert isinstance(item, Message)
        return item

    def __iter__(self) -> Iterator[Message]:
        while True:
            message = self.get()
            if message is None:
                return
            yield message

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        # A full queue has no blocked reader; readers see _closed once they drain it.
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(self._CLOSED)
        if self._on_close is not None:
            self._on_close(self)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()


class Transport(Protocol):
    """What the agent and the Leader need from the COOEE channel."""

    @property
    def peer_id(self) -> str: ...

    def publish(self, topic: str, data: bytes) -> None: ...

    def subscribe(self, topic: str) -> Subscription: ...

    def peers(self) -> list[str]: ...

    def close(self) -> None: ...


def check_outbound(topic: str, data: bytes) -> None:
    """Refuse what the channel would refuse anyway, loudly and before it leaves this process."""
    from cooee_agent.errors import TransportError

    if topic not in TOPICS:
        raise TransportError(f"unknown COOEE topic {topic!r}")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TransportError("a COOEE message must be bytes")
    if len(data) > MAX_MESSAGE_BYTES:
        raise TransportError(
            f"message of {len(data)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit"
        )


def run_validator(validator: Validator | None, topic: str, data: bytes, from_peer: str) -> bool:
    """Apply an application validator so that its bugs cannot take the transport down."""
    if validator is None:
        return True
    try:
        return bool(validator(topic, data, from_peer))
    except Exception:
        logger.warning("validator raised on a message from %s; dropped", from_peer, exc_info=True)
        return False
