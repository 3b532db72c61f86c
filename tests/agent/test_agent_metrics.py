"""The agent's /metrics, scraped over a real socket from a daemon running in-process over a
MemoryBus with the real ingest pipeline as its Leader; parsed with prometheus_client's parser."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_daemon import Harness, enrolled, wait_until

from cooee_agent.agent.metrics import start_agent_metrics
from cooee_agent.discovery.model import ProbeFailure


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    value = Harness(tmp_path)
    yield value
    value.close()


def scrape(port: int, path: str = "/metrics") -> tuple[int, dict[str, list[Any]]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        body = answer.read().decode()
    finally:
        conn.close()
    families: dict[str, list[Any]] = {}
    if answer.status == 200:
        for family in text_string_to_metric_families(body):
            families.setdefault(family.name, []).extend(family.samples)
    return answer.status, families


def value(families: dict[str, list[Any]], name: str, **labels: str) -> float:
    found = [
        s.value for s in families[name] if all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (name, labels, families.get(name))
    return float(found[0])


def test_metrics_say_enrolment_heartbeats_outbox_probes_and_slots(harness: Harness) -> None:
    daemon = harness.start()
    with start_agent_metrics(daemon, "127.0.0.1:0") as exporter:
        wait_until(lambda: enrolled(daemon), what="enrolled")
        wait_until(lambda: daemon.heartbeats.sent >= 2, what="two heartbeats")
        status, families = scrape(exporter.port)
        assert status == 200
        assert value(families, "cooee_agent_enrolment_state", state="enrolled") == 1
        assert value(families, "cooee_agent_enrolment_state", state="pending") == 0
        assert value(families, "cooee_agent_host_id") == daemon.assignment.host_id
        assert value(families, "cooee_agent_heartbeats_sent") >= 2
        assert value(families, "cooee_agent_outbox_depth") == daemon.outbox.depth()  # type: ignore[union-attr]
        token = daemon.assignment.slots[0].token
        labels = {"slot": "0", "token": token}
        assert value(families, "cooee_agent_gpu_memory_total_bytes", **labels) == 80 * 2**30
        assert value(families, "cooee_agent_gpu_memory_free_bytes", **labels) == 60 * 2**30
        assert value(families, "cooee_agent_gpu_utilisation_percent", **labels) == 10
        assert families["cooee_agent_probe_failures"] == []
        assert families["cooee_agent_mesh_dropped"] == []  # this transport drops nothing
        # The mesh transport's counts, as its node keeps them.
        daemon.transport.drop_counts = lambda: {"originator over its rate": 4}  # type: ignore[union-attr]
        _, families = scrape(exporter.port)
        assert value(families, "cooee_agent_mesh_dropped", reason="originator over its rate") == 4
        assert scrape(exporter.port, "/")[0] == 404


def test_probe_failures_are_counted_by_probe_and_reason(harness: Harness) -> None:
    real = harness.host.discover

    def failing(config: Any) -> Any:
        import dataclasses

        failure = ProbeFailure("ollama", "unreachable", "connection refused at 127.0.0.1:11434")
        return dataclasses.replace(real(config), failures=(failure,))

    harness.host.discover = failing  # type: ignore[method-assign]
    daemon = harness.start()
    with start_agent_metrics(daemon, "127.0.0.1:0") as exporter:
        _, families = scrape(exporter.port)
        assert (
            value(families, "cooee_agent_probe_failures", probe="ollama", reason="unreachable") == 1
        )
