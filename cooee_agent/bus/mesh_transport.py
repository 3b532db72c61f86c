"""The synchronous ``Transport`` over a mesh node running on its own thread.

The agent, the Leader and the CLI are synchronous; py-libp2p runs on trio. ``start_mesh`` runs a
``mesh_node.MeshNode`` in ``trio.run`` on a daemon thread and returns once it listens::

    from cooee_agent.bus.mesh_config import MeshConfig
    from cooee_agent.bus.mesh_transport import start_mesh
    from cooee_agent.bus.transport import TOPIC_ENROL, TOPIC_ASSIGNMENT

    config = MeshConfig(state_dir=Path("/var/lib/cooee-agent"),   # or agent.wiring.mesh_config
                        listen=("/ip4/0.0.0.0/tcp/4001",),
                        bootstrap=("/ip4/10.0.0.1/tcp/4001/p2p/12D3KooW...",))
    with start_mesh(config, validator=None) as mesh:     # returns once the node listens
        replies = mesh.subscribe(TOPIC_ASSIGNMENT)
        mesh.publish(TOPIC_ENROL, envelope_bytes)        # raises TransportError if refused
        message = replies.get(timeout=30.0)              # transport.Message or None
        mesh.peers(); mesh.addrs(); mesh.topic_peers(TOPIC_ENROL)
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from cooee_agent.bus.dht import RecordRules
from cooee_agent.bus.mesh_config import MeshConfig
from cooee_agent.bus.mesh_node import MeshNode
from cooee_agent.bus.transport import Subscription, Validator, check_outbound
from cooee_agent.errors import TransportError

logger = logging.getLogger(__name__)


class MeshTransport:
    """The synchronous ``Transport`` over a MeshNode running on a daemon thread."""

    def __init__(self, node: MeshNode, thread: threading.Thread, token: Any) -> None:
        self._node = node
        self._thread = thread
        self._token = token
        self._lock = threading.Lock()
        self._subscriptions: list[Subscription] = []
        self._on_close: list[Callable[[], None]] = []
        self._closed = False

    @property
    def peer_id(self) -> str:
        return self._node.peer_id

    @property
    def alive(self) -> bool:
        """False once closed or once the node's thread has ended (the node died): from then on
        every call raises TransportError and subscriptions receive nothing more."""
        return not self._closed and self._thread.is_alive()

    def publish(self, topic: str, data: bytes) -> None:
        check_outbound(topic, data)
        self._call(self._node.publish, topic, bytes(data))

    def subscribe(self, topic: str) -> Subscription:
        subscription = Subscription(topic, on_close=self._forget)
        self._call_sync(self._node.add_listener, topic, subscription.deliver)
        with self._lock:
            self._subscriptions.append(subscription)
        return subscription

    def peers(self) -> list[str]:
        return list(self._call_sync(self._node.peers))

    def topic_peers(self, topic: str) -> list[str]:
        return list(self._call_sync(self._node.topic_peers, topic))

    def mesh_peers(self, topic: str) -> list[str]:
        return list(self._call_sync(self._node.mesh_peers, topic))

    def repair(self, topic: str) -> str:
        return str(self._call(self._node.repair, topic))

    def peer_protocols(self) -> dict[str, str]:
        return dict(self._call_sync(self._node.peer_protocols))

    def addrs(self) -> list[str]:
        return list(self._call_sync(self._node.addrs))

    def drop_counts(self) -> dict[str, int]:
        return dict(self._call_sync(self._node.drop_counts))

    def dht_put(self, key: str, value: bytes) -> None:
        self._call(self._node.dht_put, key, bytes(value))

    def dht_get(self, key: str) -> bytes | None:
        found = self._call(self._node.dht_get, key)
        return None if found is None else bytes(found)

    def dht_refresh(self) -> None:
        self._call(self._node.dht_refresh)

    def dht_peers(self) -> list[str]:
        return list(self._call_sync(self._node.dht_peers))

    def on_close(self, stop: Callable[[], None]) -> None:
        """Call ``stop`` when this transport closes, before its node stops: for what serves
        beside the node (the agent's lookup socket), so it ends with the mesh, not later."""
        with self._lock:
            self._on_close.append(stop)

    def close(self, timeout: float = 10.0) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            subscriptions = list(self._subscriptions)
            companions = list(self._on_close)
        for stop in companions:
            try:
                stop()
            except Exception:  # one that fails to stop must not keep the mesh open
                logger.warning("stopping %r with the mesh failed", stop, exc_info=True)
        import trio

        with contextlib.suppress(trio.RunFinishedError):
            trio.from_thread.run_sync(self._node.stop, trio_token=self._token)
        self._thread.join(timeout)
        for subscription in subscriptions:
            subscription.close()

    def __enter__(self) -> MeshTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _forget(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)
        if not self._closed:
            with contextlib.suppress(TransportError):
                self._call_sync(
                    self._node.remove_listener, subscription.topic, subscription.deliver
                )

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        import trio

        if self._closed:
            raise TransportError("mesh transport is closed")
        try:
            return trio.from_thread.run(fn, *args, trio_token=self._token)
        except trio.RunFinishedError as error:
            raise TransportError("the mesh node has stopped") from error
        except TransportError:
            raise
        except Exception as error:
            raise TransportError(f"mesh call failed: {error}") from error

    def _call_sync(self, fn: Callable[..., Any], *args: Any) -> Any:
        import trio

        if self._closed:
            raise TransportError("mesh transport is closed")
        try:
            return trio.from_thread.run_sync(fn, *args, trio_token=self._token)
        except trio.RunFinishedError as error:
            raise TransportError("the mesh node has stopped") from error


def start_mesh(
    config: MeshConfig,
    validator: Validator | None = None,
    *,
    dht_rules: RecordRules | None = None,
    ready_timeout: float = 30.0,
) -> MeshTransport:
    """Start a node on a daemon thread and return once it listens (TransportError otherwise).
    With ``config.dht`` the node runs Kademlia too, and ``dht_rules`` say what it stores."""
    import trio

    node = MeshNode(config, validator, dht_rules)
    ready = threading.Event()
    outcome: dict[str, Any] = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            outcome["token"] = trio.lowlevel.current_trio_token()
            ready.set()

    def target() -> None:
        try:
            trio.run(main)
        except BaseException as error:  # reported to start_mesh's caller, or logged if late
            outcome["error"] = error
            if ready.is_set():
                logger.error("mesh node %s died: %s", node.peer_id, error, exc_info=error)
        finally:
            ready.set()

    thread = threading.Thread(target=target, name="cooee-mesh", daemon=True)
    thread.start()
    if not ready.wait(ready_timeout):
        raise TransportError(f"mesh node did not start within {ready_timeout:.0f}s")
    if "token" not in outcome:
        error = _first_leaf(outcome.get("error"))
        if isinstance(error, TransportError):
            raise error
        raise TransportError(f"mesh node failed to start: {error}") from error
    return MeshTransport(node, thread, outcome["token"])


def _first_leaf(error: BaseException | None) -> BaseException | None:
    """Trio wraps a failure in exception groups; the caller wants the failure itself."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        transport_errors = [e for e in error.exceptions if isinstance(e, TransportError)]
        error = transport_errors[0] if transport_errors else error.exceptions[0]
    return error


def multiaddrs_of(transport: MeshTransport | MeshNode, host: str = "127.0.0.1") -> list[str]:
    """The node's addresses on ``host`` only (tests and dev mode dial loopback)."""
    return [a for a in transport.addrs() if f"/ip4/{host}/" in a]
