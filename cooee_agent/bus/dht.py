"""The Kademlia DHT on the mesh's libp2p host (py-libp2p's ``kad_dht``), for one namespace.

The bus carries bytes: what a value under the namespace must be is the caller's ``RecordRules``
(the agent and the Leader pass ``protocol.host_records.HostRecordRules``). Every node applies
them to what it stores for others (PUT), to what it gets back (GET), and to its own local copy.

What py-libp2p 0.8.1's KadDHT does and this module adds:
- it never puts a connected peer into its routing table by itself (only peers that open a DHT
  stream to it, clients included: ``libp2p_patches.route_to_servers_only``):
  ``DhtService.maintain`` adds the connected servers and refreshes the table at once when a
  bootstrap peer connects and then every ``DhtSettings.refresh_interval``;
- ``get_value`` returns a local copy without asking the validator (an expired record, or one
  sealed to a read key this node has since replaced, would be served until the store's 24 h
  TTL): ``get`` answers from the local copy only when the rules accept it now, and otherwise
  asks the closest peers itself (``_ask_closest``), waiting for the first acceptable answer and
  a short grace for the others rather than for the slowest of them;
- the protocol id is always ``/ipfs/kad/1.0.0`` and the default ``pk``/``ipns`` validators stay:
  a go-libp2p-kad-dht node with its default prefix and a ``cooee`` validator talks to it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

logger = logging.getLogger(__name__)

# A get first asks this many of the closest known peers at once, for up to FAST_ROUNDS rounds.
FAST_PEERS = 3
FAST_ROUNDS = 2
# Once one of them has sent an acceptable value, how long a round still waits for the others, so
# that a newer sequence number arriving close behind still wins. Longer than a LAN's jitter,
# shorter than a busy peer's turn on its CPU (tens of ms), which it must not wait out.
ANSWER_GRACE_S = 0.005


class RecordRules(Protocol):
    """A namespace's validator: ``check`` raises on a value that must not be stored or used;
    ``select`` returns the index of the best of several values for one key."""

    def check(self, key: str, value: bytes) -> object: ...

    def select(self, key: str, values: list[bytes]) -> int: ...


@dataclass(frozen=True, slots=True)
class DhtSettings:
    """``server``: answer other nodes' queries and store their records (agents and the Leader);
    a client only asks (the ``resolve --mesh`` command)."""

    namespace: str = "cooee"
    server: bool = True
    refresh_interval: float = 60.0  # seconds between routing-table refreshes
    query_timeout: float = 15.0  # one whole put or get
    # The fallback lookup (nothing came from the closest peers) stops once this many peers
    # returned an acceptable value (0: asks every peer it finds); the best one wins.
    get_quorum: int = 3
    # See ANSWER_GRACE_S.
    answer_grace: float = ANSWER_GRACE_S


class DhtService:
    """A KadDHT bound to a host, with the routing-table upkeep 0.8.1 lacks."""

    def __init__(self, host: Any, settings: DhtSettings, rules: RecordRules) -> None:
        from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
        from libp2p.records.validator import NamespacedValidator, Validator

        from cooee_agent.bus.libp2p_patches import apply_dht_patches

        apply_dht_patches()

        class _Adapter(Validator):  # type: ignore[misc]
            def validate(self, key: str, value: bytes) -> None:
                rules.check(key, value)

            def select(self, key: str, values: list[bytes]) -> int:
                return rules.select(key, values)

        self.settings = settings
        self.rules = rules
        self.host = host
        validator = NamespacedValidator({settings.namespace: _Adapter()}, strict_validation=True)
        mode = DHTMode.SERVER if settings.server else DHTMode.CLIENT
        self.dht = KadDHT(host, mode, validator=validator, strict_validation=True)
        self._wake: Any = None
        self._nursery: Any = None

    def attach(self, nursery: Any) -> None:
        """The node's nursery, where a lookup leaves the questions it stopped waiting for."""
        self._nursery = nursery

    async def maintain(self) -> None:
        """Keep the routing table filled; runs for as long as the node runs."""
        import trio

        self._wake = trio.Event()
        while True:
            await self.refresh()
            with trio.move_on_after(self.settings.refresh_interval):
                await self._wake.wait()
            self._wake = trio.Event()

    def poke(self) -> None:
        """A peer connected: refresh now rather than at the next interval."""
        if self._wake is not None:
            self._wake.set()

    async def refresh(self) -> None:
        for peer in list(self.host.get_connected_peers()):
            try:
                await self.dht.add_peer(peer)
            except Exception as error:
                logger.debug("could not add %s to the routing table: %s", peer, error)
        try:
            await self.dht.refresh_routing_table()
        except Exception as error:
            logger.debug("routing table refresh failed: %s", error)

    async def put(self, key: str, value: bytes) -> None:
        import trio

        with trio.fail_after(self.settings.query_timeout):
            await self.dht.put_value(key, value)

    async def get(self, key: str) -> bytes | None:
        """The best accepted value for ``key``: this node's own copy when the rules accept it,
        else the best that the closest peers sent.

        The copy in the store is the best of every value put to this node (a PUT that loses the
        rules' ``select`` to it is refused), so it is never older than one that reached this
        node; what this node learns by asking is not kept (see docs/PROTOCOL.md, section 11)."""
        import trio

        store = self.dht.value_store
        raw = key.encode("utf-8")
        local = store.get(raw)
        if local is not None:
            try:
                self.rules.check(key, local.value)
            except Exception as error:
                # Expired, or sealed to a read key this node has replaced: no use to anyone
                # here, and get_value below would answer with it unchecked.
                logger.debug("dropping the local copy of %s: %s", key, error)
                store.remove(raw)
            else:
                return bytes(local.value)
        found = await self._ask_closest(key)
        if not found:
            with trio.move_on_after(self.settings.query_timeout):
                value = await self.dht.get_value(key, quorum=self.settings.get_quorum)
                found = [] if value is None else [value]
        if not found:
            return None
        return found[self.rules.select(key, found)]

    async def _ask_closest(self, key: str) -> list[bytes]:
        """GET_VALUE straight to the closest peers this node knows (its connected peers when
        its table is empty), then once to the closer peers they name: the accepted values.

        A cluster's routing tables hold most of it, so the holders of a record are usually
        among the first asked; 0.8.1's get_value first runs a whole FIND_NODE lookup and then
        asks every peer it found, which costs seconds on a loaded host. Nothing found here
        falls back to it."""
        from libp2p.kad_dht.utils import sort_peer_ids_by_distance

        raw = key.encode("utf-8")
        asked: set[Any] = set()
        peers = self.dht.routing_table.find_local_closest_peers(raw, FAST_PEERS)
        if not peers:
            peers = list(self.host.get_connected_peers())[:FAST_PEERS]
        for _ in range(FAST_ROUNDS):
            asked.update(peers)
            found, closer = await self._ask_round(key, peers)
            if found:
                return found
            fresh = [p for p in dict.fromkeys(closer) if p not in asked and p != self.host.get_id()]
            peers = sort_peer_ids_by_distance(raw, fresh)[:FAST_PEERS]
            if not peers:
                break
        return []

    async def _ask_round(self, key: str, peers: list[Any]) -> tuple[list[bytes], list[Any]]:
        """Ask ``peers`` at once; return when all have answered, or ``answer_grace`` after the
        first acceptable value: the accepted values and the closer peers named so far.

        Waiting for every peer made a lookup as slow as the slowest of them. The questions
        still out are left to finish in the node's nursery, not cancelled: 0.8.1 closes a
        GET_VALUE stream in a ``finally`` that a cancellation skips, and each stream left open
        holds one of its connection's 256 stream slots for as long as the connection lives."""
        import trio

        raw = key.encode("utf-8")
        store: Any = self.dht.value_store
        found: list[bytes] = []
        closer: list[Any] = []
        answered, finished = trio.Event(), trio.Event()
        outstanding = len(peers)
        settled = False  # the lookup has returned: later answers are dropped

        async def ask(peer: Any) -> None:
            nonlocal outstanding
            try:
                with trio.move_on_after(self.settings.query_timeout / 3):
                    try:
                        record, named = await store._get_from_peer(
                            peer, raw, return_record=True, return_closer_peers=True
                        )
                    except Exception as error:
                        logger.debug("GET_VALUE to %s failed: %s", peer, error)
                        return
                    if settled:
                        return
                    closer.extend(named)
                    if record is not None:
                        try:
                            self.rules.check(key, record.value)
                        except Exception as error:
                            logger.debug("refused the value %s sent for %s: %s", peer, key, error)
                            return
                        found.append(record.value)
                        answered.set()
            finally:
                outstanding -= 1
                if outstanding == 0:
                    finished.set()

        if not peers:
            return [], []
        if self._nursery is None:  # not attached to a running node: nowhere to leave them
            async with trio.open_nursery() as own:
                for peer in peers:
                    own.start_soon(ask, peer)
            return found, closer
        for peer in peers:
            self._nursery.start_soon(ask, peer)
        async with trio.open_nursery() as first:

            async def stop_at(event: Any) -> None:
                await event.wait()
                first.cancel_scope.cancel()

            first.start_soon(stop_at, answered)
            first.start_soon(stop_at, finished)
        with trio.move_on_after(self.settings.answer_grace):
            await finished.wait()
        settled = True
        return list(found), list(closer)

    def routing_peers(self) -> list[str]:
        return sorted(p.to_base58() for p in self.dht.routing_table.get_peer_ids())
