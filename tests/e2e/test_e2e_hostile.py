"""A hostile peer connected to both the Leader and an agent publishes garbage, oversized and
replayed envelopes as fast as it can; the honest agent still enrols while the flood goes on."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from e2eharness import DEADLINE, ENTRY, World, until
from meshharness import Spawner

from cooee_agent.bus.transport import MAX_MESSAGE_BYTES
from cooee_agent.protocol.kinds import TOPIC_ASSIGNMENT, TOPIC_ENROL

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

# What the hostile peer sends in each round, each for FLOOD_SECONDS: random bytes on the topic
# the Leader reads and on the one the agent reads, and messages over the size limit.
FLOODS = (
    (TOPIC_ENROL, 300),
    (TOPIC_ASSIGNMENT, 300),
    (TOPIC_ENROL, MAX_MESSAGE_BYTES + 4096),
)
FLOOD_SECONDS = 3.0
REPLAYS_PER_ROUND = 200


# Unpatched py-libp2p 0.8.1 fails this in every run: it writes one stream from several tasks
# and yamux interleaves their frames, so the flood corrupts an honest node's own RPCs, and the
# receiver's parse error then ends its whole mesh node. The mesh patches both (libp2p_patches.py).
def test_a_flooding_peer_does_not_stop_an_honest_agent_from_enrolling(
    world: World, peers: Spawner
) -> None:
    leader_addr = world.start_leader()
    leader_peer = leader_addr.rsplit("/", 1)[1]
    honest = world.agent("honest")
    hostile = peers.py(
        "hostile",
        bootstrap=(leader_addr, honest.known_addr()),
        subscribe=(TOPIC_ENROL, TOPIC_ASSIGNMENT),
    )
    # A real enrolment to replay: the hostile peer overhears another agent's.
    hostile.wait_topic_peers(TOPIC_ENROL, [leader_peer])
    victim = world.agent("victim").start()
    victim_status = victim.enrolled()
    replayed = hostile.wait_for(
        lambda e: (
            e["event"] == "message"
            and e["topic"] == TOPIC_ENROL
            and e["from"] == victim_status["peer_id"]
        ),
        DEADLINE,
        "the victim's enrolment overheard",
    )
    victim.kill()  # from now on only the hostile peer sends that envelope

    flood_start = len(hostile.events)
    started = time.monotonic()
    deadline = started + 2 * DEADLINE
    rounds = 0
    next_round = started
    status: dict[str, Any] = {}
    while status.get("enrolment") != "enrolled":
        now = time.monotonic()
        assert now < deadline, f"the honest agent never enrolled: {status}"
        # Rounds overlap, so the flood goes on without a gap until the agent is enrolled.
        if now >= next_round:
            # Replays first: the Leader's per-originator budget goes to them, not the garbage.
            for _ in range(REPLAYS_PER_ROUND):
                hostile.send(cmd="raw_publish", topic=TOPIC_ENROL, data_b64=replayed["data_b64"])
            for topic, size in FLOODS:
                hostile.send(cmd="flood", topic=topic, seconds=FLOOD_SECONDS, size=size)
            rounds += 1
            next_round = now + FLOOD_SECONDS / 3
        if honest.process is None:
            honest.start()
        assert honest.process.alive, honest.process.tail()
        status = honest.status()
    hostile.wait_for(  # let the last round end, to count what was sent
        lambda e: (
            sum(x["event"] == "flooded" for x in hostile.events[flood_start:])
            >= rounds * len(FLOODS)
        ),
        DEADLINE,
        "the flood's end",
    )
    elapsed = time.monotonic() - started
    hostile.kill()

    assert world.leader is not None and world.leader.alive, world.leader.tail()

    def honest_online() -> list[dict[str, Any]] | None:
        assert honest.process is not None and honest.process.alive, honest.process.tail()
        hosts = world.hosts()
        return hosts if by_name(hosts).get(honest.hostname, {}).get("online") else None

    hosts = until(honest_online, "the honest agent online at the Leader")
    ids = {h["hostname"]: h["host_id"] for h in hosts}
    assert ids == {
        victim.hostname: victim_status["host_id"],
        honest.hostname: status["host_id"],
    }, "one host each: no replay made a second one"
    assert victim_status["host_id"] != status["host_id"]
    events = hostile.events[flood_start:]
    assert sum(int(e["sent"]) for e in events if e["event"] == "flooded") > 0
    # The Leader kept reading: it answered the replayed enrolment with the victim's stored
    # assignment, but at most about once a second, however fast the replays came.
    victim_address = f"/agentid/{victim_status['agent_id']}"
    answers = [
        e
        for e in events
        if e["event"] == "message"
        and e["topic"] == TOPIC_ASSIGNMENT
        and e["from"] == leader_peer
        and json.loads(base64.b64decode(str(e["data_b64"])))["address"].endswith(victim_address)
    ]
    assert 1 <= len(answers) <= elapsed + 3
    # And the honest agent is still there, announcing itself, after the storm.
    seen = seconds(by_name(world.hosts())[honest.hostname]["last_seen"])

    def heartbeats_after() -> bool:
        assert honest.process is not None and honest.process.alive, honest.process.tail()
        return seconds(by_name(world.hosts())[honest.hostname]["last_seen"]) >= seen + 3

    until(heartbeats_after, "the honest agent's heartbeats after the flood")


def by_name(hosts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {h["hostname"]: h for h in hosts}


# Unpatched py-libp2p 0.8.1 lets protobuf's DecodeError escape Pubsub.continuously_read_stream:
# one bad frame from any connected peer ends the whole node. The mesh drops that peer instead.
GARBAGE_PEER = Path(__file__).resolve().parent / "garbage_rpc_peer.py"


def send_garbage_frame(world: World, target: str) -> None:
    result = subprocess.run(
        [sys.executable, str(GARBAGE_PEER), "--state-dir", str(world.tmp / "garbage"),
         "--target", target],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert '"sent"' in result.stdout, result.stderr[-2000:]


def leader_listening(world: World) -> bool:
    """A node whose mesh died has closed its listener: a plain TCP connect is refused."""
    try:
        socket.create_connection(("127.0.0.1", world.leader_port), timeout=2).close()
    except OSError:
        return False
    return True


def test_a_frame_that_is_not_a_pubsub_rpc_does_not_bring_down_the_leader(world: World) -> None:
    send_garbage_frame(world, world.start_leader())

    agent = world.agent("after-garbage").start()

    def enrolled() -> bool:
        assert world.leader is not None and world.leader.alive, world.leader.tail()
        assert leader_listening(world), "the Leader's mesh stopped: it no longer listens"
        return agent.status().get("enrolment") == "enrolled"

    until(enrolled, "an agent enrolled after the garbage frame")


def test_a_frame_that_is_not_a_pubsub_rpc_does_not_bring_down_an_agent(world: World) -> None:
    world.start_leader()
    agent = world.agent("target")
    addr = agent.known_addr()
    agent.start()
    agent.enrolled()
    world.online([agent.hostname])
    send_garbage_frame(world, addr)
    seen = seconds(world.hosts()[0]["last_seen"])

    def heartbeats_after() -> bool:
        assert agent.process is not None and agent.process.alive, agent.process.tail()
        # Several beats later, so none of them can have left before the frame arrived.
        return seconds(world.hosts()[0]["last_seen"]) >= seen + 3

    until(heartbeats_after, "heartbeats after the garbage frame")


# The defect of 0.8.1 left unpatched in this one Leader: a real way for its mesh node to die.
UNPATCHED_ENTRY = (
    "import cooee_agent.bus.libp2p_patches as patches; "
    "patches.survive_unreadable_rpcs = lambda _: None; " + ENTRY
)


def test_leader_serve_exits_1_with_one_error_line_when_its_mesh_dies(world: World) -> None:
    listen = f"/ip4/127.0.0.1/tcp/{world.leader_port}"
    argv = [sys.executable, "-c", UNPATCHED_ENTRY, "leader", "serve"]
    argv += ["--state-dir", str(world.leader_dir), "--listen", listen]
    log = world.tmp / "leader.stderr"
    leader = world.spawn("leader", argv, log, {})
    addrs_file = world.leader_dir / "leader.addrs"

    def addrs() -> list[str] | None:
        assert leader.alive, f"leader serve exited early:\n{leader.tail()}"
        return addrs_file.read_text().split() if addrs_file.exists() else None

    send_garbage_frame(world, until(addrs, "leader.addrs")[0])

    assert leader.proc.wait(timeout=DEADLINE) == 1, leader.tail()
    errors = [line for line in log.read_text().splitlines() if line.startswith("cooee-agent:")]
    assert len(errors) == 1 and "mesh has stopped under the Leader" in errors[0], leader.tail()
    assert log.read_text().splitlines()[-1] == errors[0]


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
