"""The COOEE mesh node on py-libp2p: TCP + Noise + yamux, Ed25519 peer key, signed gossipsub.

py-libp2p runs on trio only. Trio callers run the node in their own nursery; synchronous callers
(the agent, the Leader, the CLI) use ``mesh_transport.start_mesh``, which runs it on a thread::

    node = await nursery.start(run_node, config)         # a MeshNode once listening
    node.add_listener(TOPIC_ENROL, callback)             # callback(Message) on the trio thread
    await node.publish(TOPIC_ENROL, data)
    node.stop()

What 0.8.1 does by default and this module changes (see docs/PROTOCOL.md, section 8):
- plaintext, secio and TLS are offered by default: only Noise is offered here; only yamux.
- spam protection drops a peer's messages past 10/s, relayed ones included: off, replaced by the
  per-peer token buckets of ``mesh_config.MeshConfig`` (counted per forwarding peer and per
  originator).
- the per-peer send queue (32) and the subscription queue (32) drop silently: both enlarged.
- heartbeat every 120 s (meshes form slowly): 1 s; adaptive gossip (slows it again): off.
- own messages go to the mesh only; PRUNEs are sent without backoff or peers and the pruner
  keeps no backoff; PX is taken from anyone; IDONTWANT goes out for every message: see
  ``libp2p_patches`` (flood publishing, backoffs kept by both sides, PX from bootstrap peers).
- no redial, and a failed dial blocks the peer for 60 s: each bootstrap peer has a task that
  clears that negative cache and redials with exponential backoff and jitter.
- mDNS and UPnP: UPnP always off, mDNS only when ``MeshConfig.mdns`` is set.
- Kademlia: only with ``MeshConfig.dht``, on this same host and port (``bus.dht``). A node with
  no topics at all (the ``resolve --mesh`` client) runs no gossipsub: it has nothing to say
  there, and setting up pubsub with its peer on connecting doubled its first lookup. A DHT
  client runs no Kademlia upkeep either (no self-lookup at start, no table refresh).
- a listen that fails (port taken) is only logged, and SO_REUSEPORT lets a second node share a
  taken port: a fixed port is probed with a plain bind first, and a node that listens on
  nothing stops with TransportError.
Inbound messages over ``MAX_MESSAGE_BYTES``, over a peer's rate, or refused by the validator are
neither delivered nor relayed; a validator that raises counts as a refusal.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from cooee_agent.bus.dht import DhtService, RecordRules
from cooee_agent.bus.drops import DropTally
from cooee_agent.bus.libp2p_patches import OUTBOUND_DROPS, apply_patches
from cooee_agent.bus.limits import PeerRateLimiter, backoff_delay
from cooee_agent.bus.mesh_config import MeshConfig
from cooee_agent.bus.transport import (
    MAX_MESSAGE_BYTES,
    Message,
    Validator,
    check_outbound,
    run_validator,
)
from cooee_agent.errors import TransportError

logger = logging.getLogger(__name__)

MESHSUB_PROTOCOLS = ("/meshsub/1.2.0", "/meshsub/1.1.0")
# Inbound RPC frames may batch several messages (go-libp2p-pubsub does); each message inside is
# held to MAX_MESSAGE_BYTES by the validator.
MAX_RPC_BYTES = 1024 * 1024


Listener = Callable[[Message], None]


class MeshNode:
    """One libp2p host with gossipsub; lives inside ``run()`` on a trio thread."""

    def __init__(
        self,
        config: MeshConfig,
        validator: Validator | None = None,
        dht_rules: RecordRules | None = None,
    ) -> None:
        if (config.dht is None) != (dht_rules is None):
            raise TransportError("a DHT needs both its settings and its record rules")
        self.config = config
        self._validator = validator
        self._dht_rules = dht_rules
        self._dht: DhtService | None = None
        self._originators = PeerRateLimiter(config.originator_limit)
        self._forwarders = PeerRateLimiter(config.forwarder_limit)
        self._inbound_drops = DropTally("inbound")
        self._listeners: dict[str, list[Listener]] = {}
        self._host: Any = None
        self._pubsub: Any = None
        self._my_id: Any = None
        self._stop: Any = None  # trio.Event, made inside the run
        self._nursery: Any = None
        self._bootstrap: list[Any] = []
        self.peer_id = ""

    # -- the trio side -----------------------------------------------------------------------

    async def run(self, *, task_status: Any = None) -> None:
        """Run the node until ``stop()``; reports itself through ``task_status`` once listening."""
        import multiaddr  # type: ignore[import-untyped]
        import trio
        from libp2p import new_host
        from libp2p.crypto.x25519 import create_new_key_pair as new_x25519
        from libp2p.custom_types import TProtocol
        from libp2p.pubsub.gossipsub import GossipSub
        from libp2p.pubsub.pubsub import Pubsub
        from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
        from libp2p.security.noise.transport import Transport as NoiseTransport
        from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID
        from libp2p.stream_muxer.yamux.yamux import Yamux
        from libp2p.tools.anyio_service import background_trio_service

        from cooee_agent.bus.peerkey import load_or_create_peer_key

        config = self.config
        apply_patches(
            config.send_queue_size, config.subscription_queue_size, config.send_queue_bytes
        )
        key_pair = load_or_create_peer_key(config.state_dir)
        try:
            listen = [multiaddr.Multiaddr(a) for a in config.listen]
            bootstrap = [_peer_info(a) for a in config.bootstrap]
        except Exception as error:
            raise TransportError(f"bad multiaddr in mesh config: {error}") from error

        _check_ports_free(listen)
        gossiping = bool(config.topics or config.publish_only)
        host = new_host(
            key_pair=key_pair,
            sec_opt={NOISE_ID: NoiseTransport(key_pair, noise_privkey=new_x25519().private_key)},
            muxer_opt={TProtocol(YAMUX_ID): Yamux},
            listen_addrs=listen,
            enable_mDNS=config.mdns,
            enable_upnp=False,
        )
        gossipsub = GossipSub(
            protocols=[TProtocol(p) for p in MESHSUB_PROTOCOLS],
            degree=config.degree,
            degree_low=config.degree_low,
            degree_high=config.degree_high,
            heartbeat_initial_delay=0.1,
            heartbeat_interval=config.heartbeat_interval,  # type: ignore[arg-type]
            spam_protection_enabled=False,
            # Under a poor "network health" score it slows the heartbeat to 30-60 s and moves
            # D_lo/D_hi: not in the gossipsub spec, and it starves the mesh it means to help.
            adaptive_gossip_enabled=False,
            do_px=config.peer_exchange,
            px_peers_count=config.px_peers,
        )
        # PRUNEs naming peers to dial are followed only from the peers the operator configured.
        trusted = {info.peer_id for info in bootstrap} if config.peer_exchange else set()
        gossipsub.cooee_px_from = trusted  # type: ignore[attr-defined]
        pubsub = (
            Pubsub(host, gossipsub, strict_signing=True, max_inbound_rpc_size=MAX_RPC_BYTES)
            if gossiping
            else None
        )
        self._host, self._pubsub, self._my_id = host, pubsub, host.get_id()
        self.peer_id = host.get_id().to_base58()
        self._stop = trio.Event()
        if config.dht is not None and self._dht_rules is not None:
            self._dht = DhtService(host, config.dht, self._dht_rules)

        async with (
            host.run(listen_addrs=listen),
            trio.open_nursery() as nursery,
            contextlib.AsyncExitStack() as services,
        ):
            if pubsub is not None:
                await services.enter_async_context(background_trio_service(pubsub))
                await services.enter_async_context(background_trio_service(gossipsub))
            if self._dht is not None:
                self._dht.attach(nursery)
                if config.dht is not None and config.dht.server:
                    await services.enter_async_context(background_trio_service(self._dht.dht))
                    nursery.start_soon(self._dht.maintain)
                # A client asks its connected peers and the peers they name, and keeps no table.
                # KadDHT's service would start by looking the client itself up: during the
                # client's one lookup, it asked the same peer and dialled every peer named.
            # 0.8.1 logs a failed listen (e.g. port in use) and carries on deaf: refuse that.
            listening = len(host.get_network().listeners)
            if listening == 0:
                raise TransportError(f"could not listen on {', '.join(config.listen)}")
            if listening < len(listen):
                logger.warning("listening on %d of %d addresses", listening, len(listen))
            if pubsub is not None:
                await pubsub.wait_until_ready()
            for topic in config.topics:
                assert pubsub is not None
                pubsub.set_topic_validator(topic, self._validate, False)
                subscription = await pubsub.subscribe(topic)
                nursery.start_soon(self._drain, topic, subscription)
            self._nursery, self._bootstrap = nursery, bootstrap
            for info in bootstrap:
                nursery.start_soon(self._keep_connected, info)
            logger.info("mesh node %s listening on %s", self.peer_id, self.addrs())
            if task_status is not None:
                task_status.started(self)
            await self._stop.wait()
            nursery.cancel_scope.cancel()
        self._inbound_drops.report()
        OUTBOUND_DROPS.report()
        logger.info("mesh node %s stopped", self.peer_id)

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def publish(self, topic: str, data: bytes) -> None:
        check_outbound(topic, data)
        if topic not in self.config.topics and topic not in self.config.publish_only:
            raise TransportError(f"this node neither joined nor publishes to {topic!r}")
        await self._pubsub.publish(topic, bytes(data))

    def add_listener(self, topic: str, listener: Listener) -> None:
        """Call ``listener(Message)`` for every accepted message on ``topic`` (trio thread)."""
        if topic not in self.config.topics:
            raise TransportError(f"this node has not joined {topic!r}")
        self._listeners.setdefault(topic, []).append(listener)

    def remove_listener(self, topic: str, listener: Listener) -> None:
        listeners = self._listeners.get(topic, [])
        if listener in listeners:
            listeners.remove(listener)

    def drop_counts(self) -> dict[str, int]:
        """Messages dropped since start, per reason: refused inbound by this node, or not
        queued for a peer (the latter counted for every node of this process)."""
        counts = self._inbound_drops.totals()
        for reason, dropped in OUTBOUND_DROPS.totals().items():
            counts[reason] = counts.get(reason, 0) + dropped
        return counts

    def peers(self) -> list[str]:
        return sorted(p.to_base58() for p in self._host.get_connected_peers())

    def topic_peers(self, topic: str) -> list[str]:
        """Connected peers known to have joined ``topic``: the ones a publish can reach."""
        if self._pubsub is None:
            return []
        return sorted(p.to_base58() for p in self._pubsub.peer_topics.get(topic, ()))

    def mesh_peers(self, topic: str) -> list[str]:
        """The peers of this node's gossipsub mesh for ``topic``: the ones that relay to it."""
        if self._pubsub is None:
            return []
        return sorted(p.to_base58() for p in self._pubsub.router.mesh.get(topic, ()))

    async def repair(self, topic: str) -> str:
        """Mend this node's place on ``topic``: announce its subscriptions to every peer again
        (a peer that lost them publishes nothing to it), re-join the topic's mesh when it is
        empty (GRAFTs to peers outside their backoff), and dial at once every bootstrap peer
        that is not connected. Returns what was done, for the log."""
        if self._pubsub is None:
            return "no topics: nothing to mend"
        pubsub, router = self._pubsub, self._pubsub.router
        await pubsub.message_all_peers(pubsub.get_hello_packet().SerializeToString())
        done = [f"subscriptions re-announced to {len(pubsub.peers)} peer(s)"]
        if topic in self.config.topics and not router.mesh.get(topic):
            await router.leave(topic)
            await router.join(topic)
            done.append(f"re-joined {topic} with {len(router.mesh.get(topic, ()))} mesh peer(s)")
        network = self._host.get_network()
        for info in self._bootstrap:
            if info.peer_id not in network.connections:
                network.unblock_peer(info.peer_id)
                self._nursery.start_soon(self._dial_once, info)
                done.append(f"redialling {info.peer_id}")
        return "; ".join(done)

    async def _dial_once(self, info: Any) -> None:
        import trio

        with contextlib.suppress(Exception), trio.move_on_after(self.config.dial_timeout):
            await self._host.connect(info)

    # -- the DHT (only with MeshConfig.dht) --------------------------------------------------

    def _need_dht(self) -> DhtService:
        if self._dht is None:
            raise TransportError("this node runs no DHT")
        return self._dht

    async def dht_put(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key`` here and at the closest peers (the rules check it)."""
        await self._need_dht().put(key, bytes(value))

    async def dht_get(self, key: str) -> bytes | None:
        return await self._need_dht().get(key)

    async def dht_refresh(self) -> None:
        await self._need_dht().refresh()

    def dht_peers(self) -> list[str]:
        """The peers in the DHT routing table."""
        return self._need_dht().routing_peers()

    def peer_protocols(self) -> dict[str, str]:
        """The gossipsub protocol negotiated with each pubsub peer (e.g. ``/meshsub/1.2.0``)."""
        if self._pubsub is None:
            return {}
        router = self._pubsub.router
        return {p.to_base58(): str(proto) for p, proto in router.peer_protocol.items()}

    def addrs(self) -> list[str]:
        """Dialable multiaddrs of this node, each ending in ``/p2p/<peer id>``."""
        suffix = f"/p2p/{self.peer_id}"
        return [a if a.endswith(suffix) else a + suffix for a in map(str, self._host.get_addrs())]

    def _validate(self, forwarder: Any, msg: Any) -> bool:
        """Pubsub topic validator: what fails here is neither delivered nor relayed."""
        if forwarder == self._my_id:
            return True  # our own publish, checked on the way out
        size = len(msg.data)
        if size > MAX_MESSAGE_BYTES:
            self._inbound_drops.count("over the size limit", forwarder.to_base58(), size)
            return False
        if not self._forwarders.allow(forwarder.to_base58()):
            self._inbound_drops.count("forwarder over its rate", forwarder.to_base58(), size)
            return False
        origin = _origin(msg)
        if not self._originators.allow(origin):
            self._inbound_drops.count("originator over its rate", origin, size)
            return False
        return all(run_validator(self._validator, t, msg.data, origin) for t in msg.topicIDs)

    async def _drain(self, topic: str, subscription: Any) -> None:
        """Empty the library's bounded queue at once; listeners must not block."""
        async for msg in subscription:
            origin = _origin(msg)
            if origin == self.peer_id:
                continue
            message = Message(topic=topic, data=bytes(msg.data), from_peer=origin)
            for listener in list(self._listeners.get(topic, ())):
                try:
                    listener(message)
                except Exception:
                    logger.exception("listener on %s failed", topic)

    async def _keep_connected(self, info: Any) -> None:
        """Redial a bootstrap peer for as long as the node runs."""
        import trio

        network = self._host.get_network()
        attempt = 0
        while True:
            if info.peer_id in network.connections:
                attempt = 0
                await trio.sleep(0.5)
                continue
            # Without this the peer stays unreachable for 60 s after any failed dial.
            network.unblock_peer(info.peer_id)
            try:
                with trio.fail_after(self.config.dial_timeout):
                    await self._host.connect(info)
                logger.info("connected to bootstrap peer %s", info.peer_id)
                if self._dht is not None:
                    self._dht.poke()
                attempt = 0
                continue
            except Exception as error:
                delay = backoff_delay(
                    attempt, base=self.config.redial_base, cap=self.config.redial_cap
                )
                attempt += 1
                logger.debug("dial %s failed (%s); next in %.1fs", info.peer_id, error, delay)
                await trio.sleep(delay)


def _origin(msg: Any) -> str:
    from libp2p.peer.id import ID

    try:
        return str(ID(msg.from_id).to_base58())
    except Exception:
        return "<invalid>"


def _peer_info(addr: str) -> Any:
    import multiaddr  # type: ignore[import-untyped]
    from libp2p.peer.peerinfo import info_from_p2p_addr

    return info_from_p2p_addr(multiaddr.Multiaddr(addr))


async def run_node(
    config: MeshConfig,
    validator: Validator | None = None,
    *,
    dht_rules: RecordRules | None = None,
    task_status: Any = None,
) -> None:
    """Trio entry point: ``node = await nursery.start(run_node, config)``."""
    await MeshNode(config, validator, dht_rules).run(task_status=task_status)


def _check_ports_free(listen: Sequence[Any]) -> None:
    """Refuse a TCP port that is taken, which 0.8.1 would not.

    0.8.1 listens with SO_REUSEPORT (for hole punching), so a second node on the same port does
    not fail: the kernel silently shares inbound connections between the two. A plain bind
    (SO_REUSEADDR only, so a restart over TIME_WAIT still works) tells the truth.
    """
    import socket

    for maddr in listen:
        names = {p.name for p in maddr.protocols()}
        if "tcp" not in names or int(maddr.value_for_protocol("tcp")) == 0:
            continue
        family, ip = (
            (socket.AF_INET6, maddr.value_for_protocol("ip6"))
            if "ip6" in names
            else (socket.AF_INET, maddr.value_for_protocol("ip4"))
        )
        port = int(maddr.value_for_protocol("tcp"))
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((ip, port))
            except OSError as error:
                raise TransportError(f"cannot listen on {maddr}: {error.strerror}") from error
