"""The agent's own ``/metrics`` (``cooee-agent run --metrics``): enrolment state, heartbeats
sent, outbox depth, probe failures by probe, and each slot's GPU memory and utilisation as the
last heartbeat announced them, so a node's exporter scrape picks the agent up.

Read at each scrape from the daemon's attributes, on the HTTP server's thread: every value read
is one the main loop replaces whole (an int, a tuple, a record), and the outbox has its lock.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from cooee_agent.errors import CooeeError
from cooee_agent.web.server import HttpService, Response, not_found

if TYPE_CHECKING:
    from pathlib import Path

    from cooee_agent.agent.daemon import AgentDaemon

log = logging.getLogger(__name__)

ENROLMENT_STATES = ("discovering", "enrolling", "pending", "enrolled")
SLOT_LABELS = ["slot", "token"]


class AgentCollector(Collector):
    def __init__(self, daemon: AgentDaemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        daemon = self.daemon
        current = daemon.enrolment_state
        enrolment = GaugeMetricFamily(
            "cooee_agent_enrolment_state",
            "1 for the agent's enrolment state (discovering, enrolling, pending, enrolled)",
            labels=["state"],
        )
        for state in ENROLMENT_STATES:
            enrolment.add_metric([state], 1 if state == current else 0)
        yield enrolment
        assignment = daemon.assignment
        if assignment is not None:
            yield GaugeMetricFamily(
                "cooee_agent_host_id", "The host_id the Leader assigned", assignment.host_id
            )
        yield CounterMetricFamily(
            "cooee_agent_heartbeats_sent",
            "Heartbeats published since the agent started",
            daemon.heartbeats.sent,
        )
        outbox = daemon.outbox
        if outbox is not None:
            yield GaugeMetricFamily(
                "cooee_agent_outbox_depth",
                "Messages waiting in the outbox for the Leader's acknowledgement",
                outbox.depth(),
            )
        yield from _failures(daemon)
        yield from _slots(daemon.heartbeats.last_slots)
        transport = daemon.transport
        if transport is not None:
            drops: dict[str, int] = {}
            try:
                peers = len(transport.peers())
                drops = getattr(transport, "drop_counts", dict)()
            except CooeeError:
                peers = None
            if peers is not None:
                yield GaugeMetricFamily(
                    "cooee_agent_mesh_peers", "Peers connected to the agent's mesh node", peers
                )
            dropped = CounterMetricFamily(
                "cooee_agent_mesh_dropped",
                "Messages the mesh node dropped since start, by reason",
                labels=["reason"],
            )
            for reason, count in sorted(drops.items()):
                dropped.add_metric([reason], count)
            yield dropped


def _failures(daemon: AgentDaemon) -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "cooee_agent_probe_failures",
        "Probes of the latest discovery that gave no answer, by probe and reason",
        labels=["probe", "reason"],
    )
    inventory = daemon.inventory
    failures = inventory.failures if inventory is not None else ()
    for (probe, reason), count in sorted(Counter((f.probe, f.reason) for f in failures).items()):
        family.add_metric([probe, reason], count)
    yield family


def _slots(slots: tuple[Mapping[str, object], ...]) -> Iterator[Metric]:
    total = GaugeMetricFamily(
        "cooee_agent_gpu_memory_total_bytes", "GPU memory of a slot", labels=SLOT_LABELS
    )
    free = GaugeMetricFamily(
        "cooee_agent_gpu_memory_free_bytes",
        "GPU memory free in a slot at the last heartbeat",
        labels=SLOT_LABELS,
    )
    busy = GaugeMetricFamily(
        "cooee_agent_gpu_utilisation_percent",
        "GPU utilisation of a slot at the last heartbeat",
        labels=SLOT_LABELS,
    )
    for slot in slots:
        labels = [str(slot.get("slot")), str(slot.get("token"))]
        for family, key in ((total, "memory_total"), (free, "memory_free"), (busy, "utilisation")):
            value = slot.get(key)
            if isinstance(value, int | float):
                family.add_metric(labels, float(value))
    yield from (total, free, busy)


def agent_registry(daemon: AgentDaemon) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(daemon))
    return registry


def start_agent_metrics(
    daemon: AgentDaemon, bind: str, *, token_file: Path | None = None
) -> HttpService:
    """Serve ``/metrics`` on ``bind`` until closed (ConfigError for a bad address or token)."""
    from cooee_agent.web.auth import read_token_file

    registry = agent_registry(daemon)

    def route(path: str, query: Mapping[str, list[str]]) -> Response:
        if path != "/metrics":
            return not_found(path)
        return Response(200, generate_latest(registry), CONTENT_TYPE_LATEST)

    token = read_token_file(token_file) if token_file is not None else None
    return HttpService(bind, route, token=token, name="agent-metrics").start()
