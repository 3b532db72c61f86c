"""Production wiring of the daemon: real discovery, usage probe, mesh and change watchers."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cooee_agent.config import Config
from cooee_agent.discovery.host_paths import HostPaths
from cooee_agent.discovery.model import Inventory

if TYPE_CHECKING:
    from cooee_agent.agent.daemon import AgentDaemon
    from cooee_agent.agent.usage import UsageProbe
    from cooee_agent.agent.watcher_set import Watcher
    from cooee_agent.bus.mesh_config import MeshConfig
    from cooee_agent.bus.transport import Transport


# The host as discovery reads it; one value so every probe reads the same tree.
HOST_PATHS = HostPaths()


def real_discover(config: Config) -> Inventory:
    from cooee_agent.discovery.inventory import discover

    return discover(HOST_PATHS, ollama_host=config.ollama.host)


def real_usage(config: Config) -> UsageProbe:
    from cooee_agent.agent.usage import default_gpu_probe, ollama_loaded, usage_probe

    return usage_probe(default_gpu_probe(HOST_PATHS), ollama_loaded(config.ollama.host))


def real_transport(config: Config) -> Transport:
    from cooee_agent.bus.mesh_transport import start_mesh

    if not config.mesh.dht:
        return start_mesh(mesh_config(config))
    from cooee_agent.agent.host_record_keeper import HostRecordKeeper, agent_rules
    from cooee_agent.agent.lookup_socket import LookupSocket, socket_path

    rules = agent_rules(config)
    transport = start_mesh(mesh_config(config), dht_rules=rules)
    HostRecordKeeper(transport, rules, config.state_dir).start()  # ends with the mesh
    lookups = LookupSocket(
        transport.dht_get, socket_path(config.state_dir), alive=lambda: transport.alive
    )
    if lookups.start():
        transport.on_close(lookups.stop)  # its socket file goes before the process does
    return transport


def mesh_config(config: Config) -> MeshConfig:
    """The mesh settings of the agent's TOML configuration (``[mesh]`` and ``state_dir``).

    An agent joins the availability topic only with ``relay_availability``: it is the one topic
    whose traffic grows with the cluster (every host, every interval) and its one reader is the
    Leader, so an agent that joined it would receive and relay every other host's heartbeats
    several times over. Its own heartbeats go to every peer that joined the topic (flood
    publishing): the Leader, and any relay."""
    from cooee_agent.bus.mesh_config import MeshConfig
    from cooee_agent.protocol.kinds import TOPIC_AVAILABILITY, TOPICS

    relay = config.mesh.relay_availability
    dht = None
    if config.mesh.dht:
        from cooee_agent.bus.dht import DhtSettings

        dht = DhtSettings(refresh_interval=config.mesh.dht_refresh)
    return MeshConfig(
        state_dir=config.state_dir,
        listen=(config.mesh.listen,),
        bootstrap=tuple(config.mesh.bootstrap),
        mdns=config.mesh.mdns,
        peer_exchange=config.mesh.peer_exchange,
        topics=TOPICS if relay else tuple(t for t in TOPICS if t != TOPIC_AVAILABILITY),
        publish_only=() if relay else (TOPIC_AVAILABILITY,),
        dht=dht,
    )


def real_watchers(daemon: AgentDaemon) -> list[Watcher]:
    """udev (drm, net) where pyudev and netlink work, and the Ollama model poller."""
    from cooee_agent.agent.change_watchers import OllamaPoller, UdevWatcher, fetch_ollama_digests

    def changed(change: Any) -> None:
        daemon.request_rediscovery(f"{change.source}: {', '.join(change.details)}")

    host = daemon.config.ollama.host
    info = daemon.inventory.ollama if daemon.inventory is not None else None
    baseline = (
        frozenset((m.name, m.digest) for m in info.models)
        if info is not None and info.source == "api"
        else None
    )
    watchers: list[Watcher] = [
        OllamaPoller(lambda: fetch_ollama_digests(host), changed, baseline=baseline)
    ]
    if sys.platform.startswith("linux"):
        watchers.append(UdevWatcher(changed))
    return watchers


def production_daemon(config: Config, config_loader: Callable[[], Config] | None) -> AgentDaemon:
    """The daemon ``cooee-agent run`` starts."""
    from cooee_agent.agent.daemon import AgentDaemon

    return AgentDaemon(
        config,
        transport_factory=real_transport,
        discover=real_discover,
        usage=real_usage,
        watchers=real_watchers,
        config_loader=config_loader,
    )
