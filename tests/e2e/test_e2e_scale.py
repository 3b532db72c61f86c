"""Availability at cluster scale: 50 ``cooee-agent run`` processes and one ``leader serve`` on
127.0.0.1, all started at once, every agent bootstrapping to the Leader alone (a star, until peer
exchange makes it a mesh). Every heartbeat must reach the Leader, counted by the Leader's own
registry; a Leader killed mid-run must get all 50 back with the same host ids.

About 105 MB of RSS per agent: 5 to 6 GB in all. Slow (several minutes), and part of the suite.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import Cluster
from e2eharness import World

AGENTS = 50
INTERVAL_S = 2
SOAK_S = 120
BRING_UP_S = 600.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    world = World(Path(tmp_path_factory.mktemp("scale")))
    try:
        value = Cluster(world, AGENTS, interval=INTERVAL_S)
        value.start(timeout=BRING_UP_S)
        yield value
    finally:
        world.close()


def test_fifty_agents_online_and_no_heartbeat_lost_over_two_minutes(cluster: Cluster) -> None:
    before = cluster.leader_view()
    assert len(before) == AGENTS and all(h["online"] for h in before.values())
    time.sleep(SOAK_S)
    cluster.check_alive()
    view = cluster.heard_up_to(cluster.sent(), timeout=30.0)

    lost = {h: v["heartbeats_missed"] for h, v in view.items() if v["heartbeats_missed"]}
    assert not lost, f"heartbeats lost on the way to the Leader: {lost}"
    # Every seq from the first (1) to the last applied was heard: none skipped, none before.
    unheard = {h: (v["heartbeats_heard"], v["seq"]) for h, v in view.items()}
    assert {h: heard for h, (heard, seq) in unheard.items() if heard != seq} == {}
    # The soak ran: each agent was heard about every INTERVAL_S throughout it.
    soaked = {h: v["heartbeats_heard"] - before[h]["heartbeats_heard"] for h, v in view.items()}
    assert min(soaked.values()) >= 0.8 * SOAK_S / INTERVAL_S, soaked
    assert all(v["online"] for v in view.values())


def test_leader_killed_mid_run_gets_all_fifty_back_with_their_ids(cluster: Cluster) -> None:
    before = cluster.leader_view()
    ids = {h: v["host_id"] for h, v in before.items()}
    assert len(set(ids.values())) == AGENTS

    cluster.world.stop_leader(signal.SIGKILL)
    time.sleep(3 * INTERVAL_S)  # heartbeats sent meanwhile have nobody to hear them
    cluster.world.start_leader()
    after = cluster.heard_up_to({h: v["seq"] + 1 for h, v in before.items()}, timeout=180.0)

    cluster.check_alive()
    assert {h: v["host_id"] for h, v in after.items()} == ids
    assert all(v["online"] for v in after.values()), [
        h for h, v in after.items() if not v["online"]
    ]
