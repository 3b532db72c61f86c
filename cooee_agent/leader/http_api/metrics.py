"""The Leader's Prometheus metrics, read at each scrape from the registry and call book (one
read-only connection per scrape) and from the dispatcher's tally of messages handled."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from cooee_agent.leader.readonly import ReadOnlyState
from cooee_agent.leader.tally import HandledTally
from cooee_agent.protocol.kinds import topic_of

HOST_STATES = ("online", "offline", "left", "unknown")
SLOT_STATES = ("available", "busy", "draining", "degraded", "offline", "left", "unknown")
HOST_LABELS = ["host_id", "hostname"]
SLOT_LABELS = ["host_id", "hostname", "slot", "token"]

PeerCount = Callable[[], int | None]


class LeaderCollector(Collector):
    """One scrape: what the registry says now, and what this process has handled."""

    def __init__(
        self, state_dir: Path, tally: HandledTally | None, peers: PeerCount | None
    ) -> None:
        self.state_dir = state_dir
        self.tally = tally
        self.peers = peers

    def collect(self) -> Iterator[Metric]:
        with ReadOnlyState(self.state_dir) as state:
            hosts = state.hosts_json()
            calls = state.call_list()
        yield from _hosts(hosts)
        yield from _slots(hosts)
        yield from _heartbeats(hosts)
        open_calls = GaugeMetricFamily(
            "cooee_leader_calls_open",
            "Open calls for intervention, by severity",
            labels=["severity"],
        )
        for severity, count in sorted(Counter(c.severity for c in calls).items()):
            open_calls.add_metric([severity], count)
        yield open_calls
        if self.tally is not None:
            yield from _handled(self.tally.snapshot())
        if self.peers is not None:
            peers = self.peers()
            if peers is not None:
                yield GaugeMetricFamily(
                    "cooee_leader_mesh_peers", "Peers connected to the Leader's mesh node", peers
                )


def _hosts(hosts: list[dict[str, Any]]) -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "cooee_leader_hosts",
        "Registered hosts by presence state (online, offline, left, unknown) and registry status",
        labels=["state", "status"],
    )
    counts = Counter((h["state"], h["status"]) for h in hosts)
    for state in HOST_STATES:  # every state present, zero or not, so a dashboard has a series
        counts.setdefault((state, "active"), 0)
    for (state, status), count in sorted(counts.items()):
        family.add_metric([state, status], count)
    yield family
    info = GaugeMetricFamily(
        "cooee_leader_host_online", "1 when the host's last heartbeat is fresh", labels=HOST_LABELS
    )
    for host in hosts:
        info.add_metric(_host_labels(host), 1 if host["online"] else 0)
    yield info


def _slots(hosts: list[dict[str, Any]]) -> Iterator[Metric]:
    by_state = GaugeMetricFamily(
        "cooee_leader_slots",
        "GPU slots by the state their host last announced; a slot of a host not online counts "
        "under its host's state",
        labels=["state"],
    )
    total = GaugeMetricFamily(
        "cooee_leader_gpu_memory_total_bytes", "GPU memory of a slot", labels=SLOT_LABELS
    )
    free = GaugeMetricFamily(
        "cooee_leader_gpu_memory_free_bytes",
        "GPU memory free in a slot, as last announced",
        labels=SLOT_LABELS,
    )
    busy = GaugeMetricFamily(
        "cooee_leader_gpu_utilisation_percent",
        "GPU utilisation of a slot, as last announced",
        labels=SLOT_LABELS,
    )
    counts: Counter[str] = Counter({state: 0 for state in SLOT_STATES})
    for host in hosts:
        for slot in host["slots"]:
            announced = slot.get("availability")
            if host["state"] != "online" or announced is None:
                counts[host["state"]] += 1
                continue
            counts[str(announced.get("state") or "unknown")] += 1
            labels = [*_host_labels(host), str(slot["slot"]), str(slot["token"])]
            for family, key in (
                (total, "memory_total"),
                (free, "memory_free"),
                (busy, "utilisation"),
            ):
                if announced.get(key) is not None:
                    family.add_metric(labels, float(announced[key]))
    for state, count in sorted(counts.items()):
        by_state.add_metric([state], count)
    yield from (by_state, total, free, busy)


def _heartbeats(hosts: list[dict[str, Any]]) -> Iterator[Metric]:
    heard = CounterMetricFamily(
        "cooee_leader_heartbeats_heard",
        "Availability and leaving records applied, per host (kept in the registry)",
        labels=HOST_LABELS,
    )
    missed = CounterMetricFamily(
        "cooee_leader_heartbeats_missed",
        "Sequence numbers skipped between records heard: heartbeats that never arrived",
        labels=HOST_LABELS,
    )
    for host in hosts:
        heard.add_metric(_host_labels(host), host["heartbeats_heard"])
        missed.add_metric(_host_labels(host), host["heartbeats_missed"])
    yield heard
    yield missed


def _handled(counts: dict[tuple[str, str], int]) -> Iterator[Metric]:
    enrol = topic_of("enrolment")
    enrolments = CounterMetricFamily(
        "cooee_leader_enrolments",
        "Enrolments handled since the Leader started, by outcome (accepted, or why refused)",
        labels=["outcome"],
    )
    enrolments.add_metric(["accepted"], counts.get((enrol, "accepted"), 0))
    messages = CounterMetricFamily(
        "cooee_leader_messages",
        "Messages handled since the Leader started, by topic and outcome",
        labels=["topic", "outcome"],
    )
    for (topic, outcome), count in sorted(counts.items()):
        if topic == enrol and outcome != "accepted":
            enrolments.add_metric([outcome], count)
        messages.add_metric([topic, outcome], count)
    yield enrolments
    yield messages


def _host_labels(host: dict[str, Any]) -> list[str]:
    return ["" if host["host_id"] is None else str(host["host_id"]), str(host["hostname"])]


def leader_registry(
    state_dir: Path, tally: HandledTally | None = None, peers: PeerCount | None = None
) -> CollectorRegistry:
    """A registry of its own (not the library's global one), so two Leaders in one process
    (tests, dev mode) never mix their numbers."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LeaderCollector(state_dir, tally, peers))
    return registry
