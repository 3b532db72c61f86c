"""What py-libp2p 0.8.1 gets wrong for COOEE, put right before a node starts.

Every function here patches a class or module of the library (none of it has a constructor
option), so the effect is process-wide; each patch is idempotent, and each has a test that fails
without it (tests/bus/test_libp2p_defects.py, tests/bus/test_gossipsub_scale.py). docs/PROTOCOL.md
section 8 says what the mesh does as a result.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from cooee_agent.bus.drops import DropTally

logger = logging.getLogger(__name__)

# What the library could not queue for a peer, for the whole process (the patches are too).
OUTBOUND_DROPS = DropTally("outbound")

# A PRUNE names up to px_peers_count peers to dial; the dials run in the background, so a peer
# that hands out dead addresses cannot stall the stream it sent them on, and stop after this long.
PX_DIAL_BUDGET_S = 30.0
# Peer exchange dials nothing once a node has this many pubsub peers: enough for a mesh of D = 6
# on each topic plus the Leader, without every agent connecting to every other.
PX_PEER_LIMIT = 8


def apply_patches(
    send_queue_size: int, subscription_queue_size: int, send_queue_bytes: int
) -> None:
    """Bound the per-peer send queue in messages and bytes, enlarge the subscription queue
    (0.8.1 sizes both at 32 and drops from them without a word), count what is dropped, and
    patch the defects of ``Pubsub`` and ``GossipSub`` described by the functions below."""
    import libp2p.network.swarm as swarm_module
    import libp2p.pubsub.gossipsub as gossipsub_module
    import libp2p.pubsub.pubsub as pubsub_module
    from libp2p.protocol_muxer.multiselect_client import MultiselectClient
    from libp2p.pubsub.gossipsub import GossipSub

    pubsub_module.RpcQueue = bounded_rpc_queue(send_queue_size, send_queue_bytes)  # type: ignore[misc,assignment]
    pubsub_module.SUBSCRIPTION_CHANNEL_SIZE = subscription_queue_size
    pubsub_module.drop_rpc = gossipsub_module.drop_rpc = count_dropped_rpc  # type: ignore[assignment]
    survive_unreadable_rpcs(pubsub_module.Pubsub)
    serialise_rpc_writes(pubsub_module.Pubsub)
    flood_own_messages(GossipSub)
    back_off_whom_we_prune(GossipSub)
    prune_with_backoff_and_peers(GossipSub)
    take_peer_exchange_from_trusted_peers_only(GossipSub)
    diversify_outside_backoff(GossipSub)
    idontwant_for_large_messages_only(GossipSub)
    no_mesh_quality_replacement(GossipSub)
    queue_only_for_peers_being_identified(GossipSub)
    dial_without_waiting_out_the_head_start(swarm_module)
    propose_with_the_header(MultiselectClient)


def dial_without_waiting_out_the_head_start(swarm_module: Any) -> None:
    """A dial returns once it has connected, not 250 ms after it started.

    0.8.1's ``Swarm.dial_peer`` dials at most one address per transport, each after a 250 ms
    head start for the one before (go-libp2p's DialDelay), but it also waits out the head start
    after the last address, and a connection that succeeded does not end the wait: every dial
    took at least 250 ms. A node here has one transport (TCP; ``new_host`` adds QUIC only when
    asked), so a dial tries one address and there is no next one to give a head start to. A
    lookup that dials the closer peers an answer named paid those 250 ms on every round.
    """
    swarm_module._HAPPY_EYEBALLS_DELAY = 0.0


def propose_with_the_header(multiselect_client_class: Any) -> None:
    """Open a stream in one round trip: send the multistream header and the first protocol
    together, then read both answers.

    0.8.1 sends the header, waits for the peer's, and only then proposes the protocol: two round
    trips before the first byte of a request, each a turn of both processes' event loops. A new
    connection opens several streams at once (identify both ways, the DHT question), so on a
    busy host each round trip was tens of ms. go-multistream's client sends the two together
    too; a listener reads them in order (py-libp2p's reads exactly one message at a time). A
    refused first protocol ("na") goes on to the next as before.
    """
    import trio
    from libp2p.protocol_muxer.exceptions import (
        MultiselectClientError,
        MultiselectCommunicatorError,
        ProtocolNotSupportedError,
    )
    from libp2p.protocol_muxer.multiselect_client import (
        DEFAULT_NEGOTIATE_TIMEOUT,
        MULTISELECT_PROTOCOL_ID,
        PROTOCOL_NOT_FOUND_MSG,
        is_valid_handshake,
    )

    async def select_one_of(
        self: Any,
        protocols: Any,
        communicator: Any,
        negotiate_timeout: int = DEFAULT_NEGOTIATE_TIMEOUT,
    ) -> Any:
        protocols = list(protocols)
        if not protocols:
            raise MultiselectClientError("no protocol to propose")
        first = protocols[0]
        with trio.move_on_after(negotiate_timeout):
            try:
                await communicator.write(MULTISELECT_PROTOCOL_ID)
                await communicator.write(str(first))
                header = await communicator.read()
                if not is_valid_handshake(header):
                    raise MultiselectClientError(f"multistream header mismatch: {header!r}")
                answer = await communicator.read()
            except MultiselectCommunicatorError as error:
                raise MultiselectClientError(f"negotiation failed: {error}") from error
            if answer == str(first):
                return first
            if answer != PROTOCOL_NOT_FOUND_MSG:
                raise MultiselectClientError(f"unexpected answer {answer!r} to {first}")
            for protocol in protocols[1:]:
                with contextlib.suppress(ProtocolNotSupportedError):
                    return await self.try_select(communicator, protocol)
            raise MultiselectClientError(f"protocols not supported: {protocols}")
        raise MultiselectClientError(
            f"negotiation timed out after {negotiate_timeout}s, protocols: {protocols}"
        )

    _once(multiselect_client_class, "select_one_of", select_one_of)


def _once(cls: Any, name: str, replacement: Any) -> None:
    """Install ``replacement`` as ``cls.name`` unless a patch of ours is already there."""
    if getattr(getattr(cls, name), "_cooee_patched", False):
        return
    replacement._cooee_patched = True
    setattr(cls, name, replacement)


def bounded_rpc_queue(max_messages: int, max_bytes: int) -> Any:
    """The library's per-peer send queue, also refusing an RPC that would take it past
    ``max_bytes``.

    Bounded in messages alone, a queue of 4,096 held 256 MB for each peer that read slowly
    while 64 KB enrolments were relayed to it: the Leader grew by 500 MB in a 30 s flood. A
    refused RPC is dropped and counted (``count_dropped_rpc``), as a full queue's always was.
    """
    from libp2p.pubsub.rpc_queue import RpcQueue

    class BoundedRpcQueue(RpcQueue):
        def __init__(self, max_size: int = max_messages, **kwargs: Any) -> None:
            super().__init__(max_size=max_size, **kwargs)
            self.max_bytes = max_bytes
            self.queued_bytes = 0

        def push(self, rpc: Any, priority: bool = False) -> bool:
            size = rpc.ByteSize()
            if self.queued_bytes + size > self.max_bytes and len(self) > 0:
                return False
            accepted = bool(super().push(rpc, priority))
            if accepted:
                self.queued_bytes += size
            return accepted

        async def pop(self) -> Any:
            rpc = await super().pop()
            if rpc is not None:
                # The RPCs queued are not changed afterwards, so this is the size pushed.
                self.queued_bytes = max(0, self.queued_bytes - rpc.ByteSize())
            return rpc

    return BoundedRpcQueue


def count_dropped_rpc(peer_id: Any, rpc: Any) -> None:
    """The library's ``drop_rpc`` logs each dropped RPC at DEBUG only; this counts it by peer
    and logs a summary a minute (``bus.drops``)."""
    OUTBOUND_DROPS.count("send queue full", peer_id.to_base58(), rpc.ByteSize())


def survive_unreadable_rpcs(pubsub_class: Any) -> None:
    """Drop a peer whose RPC cannot be parsed, instead of dying with it.

    0.8.1's ``Pubsub.continuously_read_stream`` catches MessageTooLarge and stream errors but
    not protobuf's DecodeError: one frame that is not an RPC escapes ``stream_handler``, ends the
    connection's nursery and with it the whole node. Any failure while reading or handling one
    inbound RPC is that peer's fault, so it gets what MessageTooLarge gets: a warning naming the
    peer, its stream reset, the peer dropped from pubsub (it may reconnect; a frame that is
    garbage again costs it the stream again). Patched on the class before ``Pubsub`` is built
    (its constructor registers the bound ``stream_handler``).
    """
    original = pubsub_class.continuously_read_stream
    from libp2p.exceptions import ParseError
    from libp2p.io.exceptions import IncompleteReadError
    from libp2p.network.stream.exceptions import StreamError

    async def continuously_read_stream(self: Any, stream: Any) -> None:
        peer_id = stream.muxed_conn.peer_id
        try:
            await original(self, stream)
        except (StreamError, ParseError, IncompleteReadError):
            raise  # stream_handler already treats these as a dead peer, quietly
        except Exception as error:  # trio's Cancelled is a BaseException and passes
            logger.warning(
                "dropped pubsub peer %s: unreadable RPC (%s: %s)",
                peer_id,
                type(error).__name__,
                error,
            )
            with contextlib.suppress(Exception):
                await stream.reset()
            self._handle_dead_peer(peer_id)

    _once(pubsub_class, "continuously_read_stream", continuously_read_stream)


def serialise_rpc_writes(pubsub_class: Any) -> None:
    """Make each ``Pubsub.write_msg`` one uninterrupted write on its stream.

    0.8.1 writes a peer's stream from several tasks at once: the per-peer queue's sender and
    gossipsub's direct ``write_msg`` calls (``flush_pending_messages``, the replay of recent
    messages to a new peer). yamux's ``YamuxStream.write`` takes its lock per frame, not per
    call, so under load the frames of two RPCs interleave and the receiver reads garbage. One
    trio lock per stream, held for the whole length prefix and payload, restores the framing.
    Streams are weakly keyed, so a closed stream's lock goes with it.
    """
    original = pubsub_class.write_msg
    import weakref

    import trio

    locks: weakref.WeakKeyDictionary[Any, trio.Lock] = weakref.WeakKeyDictionary()

    async def write_msg(self: Any, stream: Any, rpc_msg: Any) -> bool:
        lock = locks.get(stream)
        if lock is None:
            lock = locks[stream] = trio.Lock()
        async with lock:
            return bool(await original(self, stream, rpc_msg))

    _once(pubsub_class, "write_msg", write_msg)


def flood_own_messages(gossipsub_class: Any) -> None:
    """Send a node's own messages to every peer on the topic, not only to its mesh peers.

    This is gossipsub v1.1's flood publishing (go-libp2p-pubsub's default), which 0.8.1 lacks:
    there a node publishes to ``mesh[topic]`` alone. In a cluster the Leader is every agent's
    bootstrap peer and prunes its mesh down to D; an agent it pruned has, for the 60 s of its
    backoff, no mesh peer at all, and its heartbeats went nowhere. With this patch an agent's
    own message reaches the Leader whenever the two are connected, whatever the mesh looks
    like, and the Leader's assignments reach every agent it is connected to. Relayed messages
    still travel the mesh only. The publish score threshold still applies.
    """
    original = gossipsub_class._get_peers_to_send

    def _get_peers_to_send(
        self: Any,
        topic_ids: Iterable[str],
        msg_forwarder: Any,
        origin: Any,
        msg_id: bytes | None = None,
    ) -> Iterator[Any]:
        topics = list(topic_ids)
        peers = set(original(self, topics, msg_forwarder, origin, msg_id))
        pubsub = self.pubsub
        if pubsub is not None and origin == pubsub.my_id:
            for topic in topics:
                for peer in pubsub.peer_topics.get(topic, ()):
                    if peer == origin or peer not in self.peer_protocol:
                        continue
                    if self.scorer is None or self.scorer.allow_publish(peer, [topic]):
                        peers.add(peer)
        yield from peers

    _once(gossipsub_class, "_get_peers_to_send", _get_peers_to_send)


def back_off_whom_we_prune(gossipsub_class: Any) -> None:
    """Never GRAFT a peer inside the backoff of a PRUNE we sent it.

    0.8.1 records no backoff for the peers its heartbeat prunes (go-libp2p-pubsub does, in
    ``prunePeer``), nor for those it PRUNEs when refusing their GRAFT as a flood; the pruned
    peer backs off for 60 s. The pruner's mesh then falls under D_lo (a peer leaves, or answers
    a GRAFT with PRUNE) and it GRAFTs the peers it has just pruned, inside their backoff: they
    log "GRAFT flood detected", penalise it and PRUNE it back, and the mesh churns instead of
    settling. And the pruned peer starts its backoff only when the PRUNE arrives, which on a
    loaded host is seconds after the pruner started its own: without slack the pruner's ends
    first and its next GRAFT still lands inside the peer's.

    So every PRUNE we send (heartbeat, refused GRAFT, replacement, leave) records the backoff
    we announced, which is what ``handle_graft`` holds the peer to, and a later time before
    which we do not GRAFT the peer ourselves: the backoff plus BACKOFF_SLACK_S (go-libp2p-pubsub
    waits one heartbeat of slack). Every path that grafts is held to it: the heartbeat (mesh
    fill, opportunistic grafting), the first fill on a new subscription, the diversity grafts.
    """
    original_emit_prune = gossipsub_class.emit_prune
    original_heartbeat = gossipsub_class.mesh_heartbeat
    original_subscribed = gossipsub_class.on_peer_subscribed

    async def emit_prune(
        self: Any, topic: str, to_peer: Any, do_px: bool, is_unsubscribe: bool
    ) -> None:
        seconds = self.unsubscribe_back_off if is_unsubscribe else self.prune_back_off
        _remember_prune(self, to_peer, topic, seconds)
        await original_emit_prune(self, topic, to_peer, do_px, is_unsubscribe)

    def mesh_heartbeat(self: Any) -> Any:
        to_graft, to_prune = original_heartbeat(self)
        for peer, topics in to_prune.items():
            for topic in topics:
                _remember_prune(self, peer, topic, self.prune_back_off)
        for peer, topics in list(to_graft.items()):
            allowed = [t for t in topics if graft_allowed(self, peer, t)]
            for topic in set(topics) - set(allowed):
                _leave_mesh(self, peer, topic)
            if allowed:
                to_graft[peer] = allowed
            else:
                del to_graft[peer]
        _forget_expired(self)
        return to_graft, to_prune

    async def on_peer_subscribed(self: Any, peer_id: Any, topic: str) -> None:
        if graft_allowed(self, peer_id, topic):
            await original_subscribed(self, peer_id, topic)

    _once(gossipsub_class, "emit_prune", emit_prune)
    _once(gossipsub_class, "mesh_heartbeat", mesh_heartbeat)
    _once(gossipsub_class, "on_peer_subscribed", on_peer_subscribed)


# The pruned peer's backoff starts when our PRUNE arrives; ours waits this much longer.
BACKOFF_SLACK_S = 10.0


def _graft_after(router: Any) -> dict[str, dict[Any, float]]:
    table = getattr(router, "_cooee_graft_after", None)
    if table is None:
        table = router._cooee_graft_after = {}
    return table  # type: ignore[no-any-return]


def _remember_prune(router: Any, peer: Any, topic: str, seconds: float) -> None:
    router._add_back_off(peer, topic, False, int(seconds))
    until = time.time() + seconds + BACKOFF_SLACK_S
    by_peer = _graft_after(router).setdefault(topic, {})
    by_peer[peer] = max(by_peer.get(peer, 0.0), until)


def graft_allowed(router: Any, peer: Any, topic: str) -> bool:
    """False while ``peer`` is inside the backoff (plus slack) of a PRUNE we sent it."""
    until = _graft_after(router).get(topic, {}).get(peer)
    return until is None or until <= time.time()


def _forget_expired(router: Any) -> None:
    now = time.time()
    for by_peer in _graft_after(router).values():
        for peer in [p for p, until in by_peer.items() if until <= now]:
            del by_peer[peer]


def _leave_mesh(router: Any, peer: Any, topic: str) -> None:
    router.mesh.get(topic, set()).discard(peer)
    if router.scorer is not None:
        router.scorer.on_leave_mesh(peer, topic)


def prune_with_backoff_and_peers(gossipsub_class: Any) -> None:
    """Send the heartbeat's PRUNEs as ``emit_prune`` does: with the backoff and, when the
    router does peer exchange, with peers to dial instead.

    0.8.1's ``_emit_control_msgs`` builds a bare ``ControlPrune(topicID=...)``: no backoff and
    no peers, whatever ``do_px`` says. An agent that the Leader prunes then learns of no other
    peer, and the mesh stays a star with most agents outside it. Here each heartbeat PRUNE goes
    out through ``emit_prune`` (backoff, and PX when ``do_px``), then the GRAFTs and IHAVEs
    as before.
    """
    original = gossipsub_class._emit_control_msgs

    async def _emit_control_msgs(self: Any, to_graft: Any, to_prune: Any, to_gossip: Any) -> None:
        for peer, topics in list(to_prune.items()):
            for topic in topics:
                await self.emit_prune(topic, peer, self.do_px, False)
        await original(self, to_graft, {}, to_gossip)

    _once(gossipsub_class, "_emit_control_msgs", _emit_control_msgs)


def take_peer_exchange_from_trusted_peers_only(gossipsub_class: Any) -> None:
    """Dial the peers a PRUNE names only when it comes from a peer this node trusts for it (its
    bootstrap peers: the operator named them), and dial them in the background.

    0.8.1 takes PX from anyone (its score thresholds default to minus infinity), so any peer
    could steer a node's connections toward its own; and it dials the peers one after another
    inside the handler of the stream the PRUNE came on, so a list of dead addresses stalls
    every later message of that peer. And it dials every peer named, however many it already
    has: at 50 agents each ended up connected to 45 others and the host was saturated.
    ``gossipsub.cooee_px_from`` (a set of peer ids, empty by default) names the trusted peers;
    the dials run as a task bounded by PX_DIAL_BUDGET_S, and only while the node has fewer than
    ``gossipsub.cooee_px_peer_limit`` connected pubsub peers (default PX_PEER_LIMIT).
    """
    original_prune = gossipsub_class.handle_prune
    original_px = gossipsub_class._do_px

    async def handle_prune(self: Any, prune_msg: Any, sender_peer_id: Any) -> None:
        if prune_msg.peers and sender_peer_id not in getattr(self, "cooee_px_from", ()):
            logger.debug("ignored %d PX peer(s) from %s", len(prune_msg.peers), sender_peer_id)
            del prune_msg.peers[:]
        await original_prune(self, prune_msg, sender_peer_id)

    async def dial_px(self: Any, px_peers: list[Any]) -> None:
        import trio

        try:
            with trio.move_on_after(PX_DIAL_BUDGET_S):
                await original_px(self, px_peers)
        except Exception as error:
            logger.debug("peer exchange dials failed: %s", error)

    async def _do_px(self: Any, px_peers: list[Any]) -> None:
        room = getattr(self, "cooee_px_peer_limit", PX_PEER_LIMIT) - len(self.pubsub.peers)
        if room > 0:
            self.manager.run_task(dial_px, self, list(px_peers)[:room])

    _once(gossipsub_class, "handle_prune", handle_prune)
    _once(gossipsub_class, "_do_px", _do_px)


def diversify_outside_backoff(gossipsub_class: Any) -> None:
    """Keep the eclipse protection's extra GRAFTs out of their peers' backoff.

    0.8.1's ``_improve_mesh_diversity`` grafts up to two peers of other IP addresses into a mesh
    whose addresses are too alike, without asking whether they are in backoff: the same GRAFT
    inside a backoff that ``back_off_whom_we_prune`` prevents. Those peers leave the mesh again
    before the GRAFTs go out.
    """
    original = gossipsub_class._improve_mesh_diversity

    def _improve_mesh_diversity(self: Any, topic: str, current_ips: set[str]) -> list[Any]:
        kept = []
        for peer in original(self, topic, current_ips):
            if self._check_back_off(peer, topic) or not graft_allowed(self, peer, topic):
                _leave_mesh(self, peer, topic)
            else:
                kept.append(peer)
        return kept

    _once(gossipsub_class, "_improve_mesh_diversity", _improve_mesh_diversity)


# IDONTWANT is worth its own RPC per mesh peer only when the message it spares is large.
IDONTWANT_MIN_BYTES = 16 * 1024


def idontwant_for_large_messages_only(gossipsub_class: Any) -> None:
    """Send IDONTWANT (gossipsub v1.2) only for messages of IDONTWANT_MIN_BYTES or more.

    0.8.1 sends one IDONTWANT RPC to every mesh peer for every message it forwards, whatever its
    size: for COOEE's 1-2 KB heartbeats that is as many extra RPCs, each framed, encrypted and
    sent, as the duplicates it might spare, and on a loaded host they arrive after the
    duplicates anyway. The v1.2 spec leaves the threshold to the implementation
    (go-libp2p-pubsub: 1 KiB); ours keeps it for the large envelopes only.
    """
    original_publish = gossipsub_class.publish
    original_emit = gossipsub_class._emit_idontwant_for_message

    async def publish(self: Any, msg_forwarder: Any, pubsub_msg: Any) -> None:
        # Read by _emit_idontwant_for_message, publish's first await: nothing runs between.
        self._cooee_forwarding_bytes = len(pubsub_msg.data)
        await original_publish(self, msg_forwarder, pubsub_msg)

    async def _emit_idontwant_for_message(self: Any, msg_id: bytes, topic_ids: Any) -> None:
        if getattr(self, "_cooee_forwarding_bytes", 0) >= IDONTWANT_MIN_BYTES:
            await original_emit(self, msg_id, topic_ids)

    _once(gossipsub_class, "publish", publish)
    _once(gossipsub_class, "_emit_idontwant_for_message", _emit_idontwant_for_message)


def no_mesh_quality_replacement(gossipsub_class: Any) -> None:
    """Turn off 0.8.1's "mesh quality maintenance", which is not in the gossipsub spec.

    After every heartbeat it PRUNEs a working mesh peer whenever a peer outside the mesh scores
    0.1 higher, and GRAFTs that one straight away, past ``back_off_whom_we_prune``'s slack:
    with the GRAFT-flood penalties of a cold start, scores differ and the meshes churned.
    The spec's own mechanisms (D_lo/D_hi in the heartbeat, opportunistic grafting) remain.
    """

    async def _maintain_mesh_quality(self: Any, topic: str) -> None:
        return None

    _once(gossipsub_class, "_maintain_mesh_quality", _maintain_mesh_quality)


# How long after a peer's protocol is known messages are still held for it until it subscribes.
PENDING_GRACE_S = 5.0


def queue_only_for_peers_being_identified(gossipsub_class: Any) -> None:
    """Hold a message for a connected peer that has not subscribed to its topic only while that
    peer is new (its identify and subscriptions may still be on the way).

    0.8.1 queues every message it publishes or forwards for every connected peer that has not
    joined the topic, "optimistically", for as long as the peer stays connected: up to 100 per
    peer, pruned with a list rebuild and a warning per message once full. A Leader forwarding
    50 agents' heartbeats to 50 agents that never join the availability topic (they publish
    to it without joining) spent its time rebuilding those lists and logging 1,000 warnings a
    second, and the heartbeats waited. After PENDING_GRACE_S the queue of an identified peer
    is dropped instead: a peer that wants a topic has said so by then.
    """
    original_add = gossipsub_class.add_peer
    original_remove = gossipsub_class.remove_peer
    original_prune = gossipsub_class._prune_pending_messages

    def _added_at(router: Any) -> dict[Any, float]:
        table = getattr(router, "_cooee_added_at", None)
        if table is None:
            table = router._cooee_added_at = {}
        return table  # type: ignore[no-any-return]

    def add_peer(self: Any, peer_id: Any, protocol_id: Any) -> None:
        _added_at(self)[peer_id] = time.monotonic()
        original_add(self, peer_id, protocol_id)

    def remove_peer(self: Any, peer_id: Any) -> None:
        _added_at(self).pop(peer_id, None)
        original_remove(self, peer_id)

    def _prune_pending_messages(self: Any, peer_id: Any) -> None:
        added = _added_at(self).get(peer_id)
        if added is not None and time.monotonic() - added > PENDING_GRACE_S:
            self._pending_messages.pop(peer_id, None)
            return
        original_prune(self, peer_id)

    _once(gossipsub_class, "add_peer", add_peer)
    _once(gossipsub_class, "remove_peer", remove_peer)
    _once(gossipsub_class, "_prune_pending_messages", _prune_pending_messages)


def apply_dht_patches() -> None:
    """The Kademlia defects, patched when a node runs the DHT (``bus.dht``)."""
    from libp2p.kad_dht.kad_dht import KadDHT

    route_to_servers_only(KadDHT)


def route_to_servers_only(kad_dht_class: Any) -> None:
    """Put a peer into the routing table only once identify says it serves the DHT protocol.

    0.8.1 adds every peer that opens a DHT stream, "so it must be a server", and a peer whose
    protocols are not yet known: a client (``resolve --mesh``, which asks and goes) lands in
    the tables, is handed to others as a closer peer, and every later lookup dials its dead
    address and stores the value there again ("entry correction"). The Kademlia spec keeps
    clients out of routing tables; so does this. Servers found later (a refresh, a lookup's
    answers) are added then.
    """
    from libp2p.kad_dht.common import PROTOCOL_ID

    async def add_peer(self: Any, peer_id: Any, *, skip_server_mode_check: bool = False) -> bool:
        try:
            protocols = self.host.get_peerstore().get_protocols(peer_id) or []
        except Exception:
            protocols = []
        if str(PROTOCOL_ID) not in protocols:
            return False
        return bool(await self.routing_table.add_peer(peer_id, skip_server_mode_check=True))

    _once(kad_dht_class, "add_peer", add_peer)
