"""Look a host record up in the DHT from an enrolled agent's host, without the Leader.

The running agent is asked first, over its socket (``agent.lookup_socket``): its node is in the
DHT already. When it is not running, cannot answer or found nothing, a short-lived client node
(its own throw-away peer key, DHT client mode, no topics) dials the local agent and the
configured bootstrap peers and gets ``/cooee/host/<host_id>`` itself. Either way the record is
checked here against the configured Leader keys and the read key of the local agent's
assignment, and opened. When the client node finds nothing acceptable it looks again accepting
anything well formed, to say plainly why: missing, expired, signed by another key, or sealed to
another read key.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cooee_agent.config import Config
from cooee_agent.errors import CooeeError
from cooee_agent.protocol.errors import RejectedError
from cooee_agent.protocol.host_records import (
    HostInfo,
    HostRecordRules,
    host_key,
    open_host_record,
    parse_host_record,
    read_key_identity,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0  # for the first peer to answer the dial


class HostLookupError(CooeeError):
    """The record is missing, or present but refused (``reason`` says which)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(slots=True)
class _Rules:
    """The strict rules, or (``lenient``) any record whose form and signature hold."""

    strict: HostRecordRules
    lenient: bool = False

    def check(self, key: str, value: bytes) -> object:
        return parse_host_record(value) if self.lenient else self.strict.check(key, value)

    def select(self, key: str, values: list[bytes]) -> int:
        return self.strict.select(key, values)


def local_agent_addr(config: Config) -> str | None:
    """The local agent's multiaddr on loopback, from its listen address and peer key."""
    from cooee_agent.bus.peerkey import PEER_KEY_FILE, load_or_create_peer_key

    if not (Path(config.state_dir) / PEER_KEY_FILE).exists():
        return None
    if config.mesh.listen.endswith("/tcp/0"):
        return None  # a port picked at start: not knowable from here
    from libp2p.peer.id import ID

    key_pair = load_or_create_peer_key(Path(config.state_dir))
    peer_id = ID.from_pubkey(key_pair.public_key).to_base58()
    listen = config.mesh.listen.replace("/ip4/0.0.0.0/", "/ip4/127.0.0.1/")
    return f"{listen}/p2p/{peer_id}"


def lookup_host(
    config: Config,
    host_id: int,
    *,
    timeout: float = 15.0,
    quorum: int = 3,
    ask_agent: bool = True,
    library_log_level: int | None = None,
) -> HostInfo:
    """The opened record of ``host_id``; HostLookupError naming why not.

    ``ask_agent=False`` skips the running agent and always starts a client node;
    ``library_log_level``, when given, is set on py-libp2p's loggers once it is imported."""
    from cooee_agent.agent.host_record_keeper import agent_rules, stored_read_key

    secret = stored_read_key(Path(config.state_dir))
    if secret is None:
        raise HostLookupError(
            "no-read-key",
            f"this host holds no read key ({config.state_dir}/assignment.json has none): "
            "it must be enrolled with a Leader that runs the DHT",
        )
    identity = read_key_identity(secret)
    strict = agent_rules(config)
    key = host_key(host_id)
    why = "asked not to ask the running agent"
    if ask_agent:
        from cooee_agent.agent.lookup_socket import AgentUnavailable, ask_running_agent

        try:
            value = ask_running_agent(config.state_dir, host_id, timeout=timeout)
        except AgentUnavailable as error:
            why = str(error)
        else:
            if value is not None:
                return _opened(strict, key, value, identity)
            # A node of this command's own looks again, and says why when it finds only
            # records it must refuse.
            why = "the running agent's node found no record it accepts"
    log.debug("looking %s up from a node of this command's own: %s", key, why)
    value = _get_from_a_client_node(config, key, strict, timeout, quorum, library_log_level)
    return _opened(strict, key, value, identity)


def _get_from_a_client_node(
    config: Config,
    key: str,
    strict: HostRecordRules,
    timeout: float,
    quorum: int,
    library_log_level: int | None,
) -> bytes:
    """The value a short-lived DHT client finds under ``key`` (refused or not: see _Rules)."""
    import libp2p  # noqa: F401  (its import resets its loggers: set them after it)

    from cooee_agent.bus.dht import DhtSettings
    from cooee_agent.bus.mesh_config import MeshConfig
    from cooee_agent.bus.mesh_transport import start_mesh

    if library_log_level is not None:
        logging.getLogger("libp2p").setLevel(library_log_level)
    rules = _Rules(strict)
    bootstrap = [a for a in (local_agent_addr(config),) if a] + list(config.mesh.bootstrap)
    if not bootstrap:
        raise HostLookupError("no-peers", "no local agent and no bootstrap peer to ask")
    with tempfile.TemporaryDirectory(prefix="cooee-resolve-") as scratch:
        mesh_config = MeshConfig(
            state_dir=Path(scratch),
            listen=("/ip4/127.0.0.1/tcp/0",),
            bootstrap=tuple(bootstrap),
            topics=(),
            dht=DhtSettings(
                server=False, refresh_interval=3600, query_timeout=timeout, get_quorum=quorum
            ),
        )
        with start_mesh(mesh_config, dht_rules=rules) as node:
            _wait_for_a_peer(node)
            value = node.dht_get(key)
            if value is None:
                rules.lenient = True
                value = node.dht_get(key)
                if value is None:
                    raise HostLookupError("missing", f"the DHT holds no record for {key}")
    return value


def _opened(strict: HostRecordRules, key: str, value: bytes, identity: Any) -> HostInfo:
    try:
        record = strict.check(key, value)
        return open_host_record(record, [identity])
    except RejectedError as error:
        raise HostLookupError(
            error.reason, f"the record for {key} is refused: {error.detail}"
        ) from None


def _wait_for_a_peer(node: Any) -> None:
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while not node.peers():
        if time.monotonic() > deadline:
            raise HostLookupError(
                "no-peers", f"no peer answered within {CONNECT_TIMEOUT_S:.0f} s (is the agent up?)"
            )
        # The dial takes a few ms on a LAN; a coarser poll would add most of its own period.
        time.sleep(0.002)
