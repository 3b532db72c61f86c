"""A Leader and several agents as separate processes on 127.0.0.1: enrolment, a Leader restart,
and an agent killed between publishing its enrolment and receiving its assignment."""

from __future__ import annotations

import base64
import json
import signal
from typing import Any

import pytest
from e2eharness import World, until
from meshharness import Spawner

from cooee_agent.agent.state import ASSIGNMENT_FILE, PENDING_FILE
from cooee_agent.protocol.kinds import TOPIC_ENROL

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def by_hostname(hosts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {h["hostname"]: h for h in hosts}


def test_three_agent_processes_are_assigned_distinct_host_ids_and_shown_online(
    world: World,
) -> None:
    world.start_leader()
    agents = [world.agent(name).start() for name in ("alpha", "bravo", "charlie")]
    names = [a.hostname for a in agents]

    hosts = world.online(names)

    assert sorted(h["hostname"] for h in hosts) == sorted(names)  # nobody else, no duplicate
    ids = [h["host_id"] for h in hosts]
    assert None not in ids and len(set(ids)) == 3
    assert all(h["status"] == "active" and h["state"] == "online" for h in hosts)
    listed = by_hostname(hosts)
    for agent in agents:
        status = agent.enrolled()
        assert status["host_id"] == listed[agent.hostname]["host_id"]
        assert [t["token"] for t in status["tokens"]] == [
            s["token"] for s in listed[agent.hostname]["slots"]
        ]


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_a_restarted_leader_keeps_every_id_and_agents_come_back_by_themselves(
    world: World, signum: int
) -> None:
    world.start_leader()
    early = world.agent("early").start()
    before = by_hostname(world.online([early.hostname]))[early.hostname]

    world.stop_leader(signum)
    # Started while the Leader is down: its enrolment waits in the outbox.
    late = world.agent("late").start()
    until(
        lambda: (
            (s := late.status()).get("enrolment") == "enrolling"
            and (s.get("outbox_depth") or 0) >= 1
        ),
        "the late agent's enrolment queued in its outbox",
    )
    world.start_leader()

    hosts = by_hostname(world.online([early.hostname, late.hostname]))
    assert set(hosts) == {early.hostname, late.hostname}
    assert hosts[early.hostname]["host_id"] == before["host_id"]
    assert hosts[late.hostname]["host_id"] not in (None, before["host_id"])
    assert early.status()["host_id"] == before["host_id"]
    assert late.enrolled()["host_id"] == hosts[late.hostname]["host_id"]

    # The early agent reconnected by itself: its heartbeats keep arriving.
    seen = hosts[early.hostname]["last_seen"]
    until(
        lambda: by_hostname(world.hosts())[early.hostname]["last_seen"] > seen,
        "a newer heartbeat of the early agent",
    )


def test_an_agent_killed_between_publish_and_assignment_completes_without_a_duplicate(
    world: World, peers: Spawner
) -> None:
    # No Leader yet; a witness peer hears the enrolment: it was published, and not answered.
    witness = peers.py("witness", subscribe=(TOPIC_ENROL,))
    leader_addr = world.future_leader_addr()
    agent = world.agent("phoenix", bootstrap=[leader_addr, witness.addr]).start()
    first = witness.wait_for(
        lambda e: e["event"] == "message" and e["topic"] == TOPIC_ENROL, 60, "an enrolment"
    )
    agent.kill()
    pending = json.loads((agent.state_dir / PENDING_FILE).read_text())
    assert not (agent.state_dir / ASSIGNMENT_FILE).exists()
    after_kill = len(witness.events)

    assert world.start_leader() == leader_addr
    agent.start()
    status = agent.enrolled()

    hosts = world.online([agent.hostname])
    assert [h["hostname"] for h in hosts] == [agent.hostname]
    assert hosts[0]["host_id"] == status["host_id"]
    # The assignment answers the enrolment sealed before the kill: the outbox survived it, and
    # the restarted agent sent the very same envelope again.
    stored = json.loads((agent.state_dir / ASSIGNMENT_FILE).read_text())
    assert stored["assignment"]["enrolment_nonce"] in pending["nonces"]
    witness.wait_for(
        lambda e: e["event"] == "message" and e["data_b64"] == first["data_b64"],
        30,
        "the stored envelope resent after the restart",
        start=after_kill,
    )
    assert json.loads(base64.b64decode(str(first["data_b64"])))["kind"] == "enrolment"
