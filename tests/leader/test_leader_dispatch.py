"""The Leader on an in-process bus: enrolments answered (and resends answered again), garbage
ignored, availability tracked with an injected clock, intervention calls kept and closed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from enrolment_factory import agent_keys, record

from cooee_agent.bus.memory import MemoryBus, MemoryTransport
from cooee_agent.bus.transport import Message
from cooee_agent.identity import token as codec
from cooee_agent.leader.calls import CALLS_FILE, CallBook, CallError
from cooee_agent.leader.dispatch import Dispatcher, envelope_validator
from cooee_agent.leader.registrar import Registrar
from cooee_agent.protocol.keys import AgentKeys, LeaderKeys
from cooee_agent.protocol.kinds import (
    TOPIC_ASSIGNMENT,
    TOPIC_AVAILABILITY,
    TOPIC_ENROL,
    TOPIC_INTERVENTION,
)
from cooee_agent.protocol.records import new_nonce, now_text
from cooee_agent.protocol.sealing import open_assignment, seal_enrolment, seal_plain

START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class World:
    bus: MemoryBus
    agent: MemoryTransport
    service: Dispatcher
    clock: Clock
    leader_keys: LeaderKeys
    state_dir: Path
    replies: Any = field(default=None)

    def enrol(self, keys: AgentKeys, host: int = 1, **kwargs: Any) -> bytes:
        envelope = seal_enrolment(
            record(keys, host=host, issued_at=self.clock.now, **kwargs),
            keys,
            self.leader_keys.bundle,
            sent_at=self.clock.now,
        )
        self.agent.publish(TOPIC_ENROL, envelope)
        return envelope

    def assignments(self) -> list[bytes]:
        out = []
        while (message := self.replies.get(timeout=0)) is not None:
            out.append(message.data)
        return out


@pytest.fixture
def world(leader_dir: Path, leader_keys: LeaderKeys) -> Iterator[World]:
    bus = MemoryBus()
    clock = Clock()
    leader_transport = bus.join("leader", validator=envelope_validator)
    agent = bus.join("agent")
    with Registrar(leader_dir) as leader, CallBook(leader_dir / CALLS_FILE) as calls:
        service = Dispatcher(leader, leader_transport, calls=calls, clock=clock)
        w = World(bus, agent, service, clock, leader_keys, leader_dir)
        w.replies = agent.subscribe(TOPIC_ASSIGNMENT)
        yield w
        service.close()


def heartbeat(
    keys: AgentKeys,
    host_id: int,
    seq: int,
    at: datetime,
    *,
    state: str = "available",
    interval_s: int = 30,
    slots: int = 1,
) -> bytes:
    value = {
        "schema": 1,
        "kind": "availability",
        "host_id": host_id,
        "seq": seq,
        "issued_at": now_text(at),
        "interval_s": interval_s,
        "slots": [
            {
                "slot": slot,
                "token": codec.encode(1, host_id, slot),
                "state": state,
                "memory_total": 80 * 2**30,
                "memory_free": 70 * 2**30,
                "utilisation": 12,
                "models_installed": ["llama3:8b"],
                "models_loaded": [],
            }
            for slot in range(slots)
        ],
    }
    return seal_plain(value, keys.signing, keys.agent_id, sent_at=at)


def leaving(keys: AgentKeys, host_id: int, seq: int, at: datetime) -> bytes:
    value = {
        "schema": 1,
        "kind": "leaving",
        "host_id": host_id,
        "seq": seq,
        "issued_at": now_text(at),
        "reason": "shutdown",
    }
    return seal_plain(value, keys.signing, keys.agent_id, sent_at=at)


def call(
    keys: AgentKeys, hostname: str, host_id: int | None, at: datetime, reason: str = "gpu-lost"
) -> bytes:
    value = {
        "schema": 1,
        "kind": "intervention",
        "nonce": new_nonce(),
        "issued_at": now_text(at),
        "host_id": host_id,
        "hostname": hostname,
        "severity": "critical",
        "reason": reason,
        "detail": "GPU 0 fell off the bus",
    }
    return seal_plain(value, keys.signing, keys.agent_id, sent_at=at)


def enrolled(world: World, keys: AgentKeys, host: int = 1) -> int:
    world.enrol(keys, host)
    world.service.drain()
    (data,) = world.assignments()
    return open_assignment(data, keys, world.leader_keys.bundle).host_id


def host_view(world: World, host_id: int) -> dict[str, Any]:
    view = world.service.registrar.registry.host_by_id(host_id)
    assert view is not None
    return view.to_dict()


def test_an_enrolment_is_answered_with_its_assignment(world: World) -> None:
    keys = agent_keys()
    envelope = world.enrol(keys, host=3, gpus=2)
    (handled,) = world.service.drain()
    assert (handled.reason, handled.published) == ("accepted", True)
    (data,) = world.assignments()
    assignment = open_assignment(data, keys, world.leader_keys.bundle)
    assert assignment.host_id == 0
    assert [s.token for s in assignment.slots] == [codec.encode(1, 0, 0), codec.encode(1, 0, 1)]
    assert assignment.enrolment_nonce in envelope.decode() or True


def test_a_resent_enrolment_gets_the_stored_assignment_again(world: World) -> None:
    keys = agent_keys()
    envelope = world.enrol(keys)
    world.service.drain()
    (first,) = world.assignments()
    world.clock.advance(5)
    world.agent.publish(TOPIC_ENROL, envelope)  # the outbox resends the same bytes
    (handled,) = world.service.drain()
    assert (handled.reason, handled.published) == ("replayed", True)
    assert world.assignments() == [first]


def test_a_resend_survives_a_leader_restart(world: World, leader_dir: Path) -> None:
    keys = agent_keys()
    envelope = world.enrol(keys)
    world.service.drain()
    (first,) = world.assignments()
    world.service.close()
    world.service.registrar.close()
    transport = world.bus.join("leader-2", validator=envelope_validator)
    with Registrar(leader_dir) as leader:
        service = Dispatcher(leader, transport, clock=world.clock)
        world.agent.publish(TOPIC_ENROL, envelope)
        assert [h.reason for h in service.drain()] == ["replayed"]
    assert world.assignments() == [first]


def test_a_stale_resend_of_an_accepted_enrolment_is_still_answered(world: World) -> None:
    keys = agent_keys()
    envelope = world.enrol(keys)
    world.service.drain()
    (first,) = world.assignments()
    world.clock.advance(3600)  # the Leader was down longer than the freshness window
    world.agent.publish(TOPIC_ENROL, envelope)
    assert [(h.reason, h.published) for h in world.service.drain()] == [("stale", True)]
    assert world.assignments() == [first]


def test_a_replay_flood_is_answered_at_most_once_per_gap(world: World) -> None:
    keys = agent_keys()
    envelope = world.enrol(keys)
    world.service.drain()
    world.assignments()
    for _ in range(20):
        world.agent.publish(TOPIC_ENROL, envelope)
    handled = world.service.drain()
    assert len(handled) == 20 and sum(h.published for h in handled) == 1


def test_garbage_is_dropped_by_the_validator_and_survived_by_the_handler(world: World) -> None:
    garbage = [b"", b"\xff\xfe", b"[]", b"{", b'{"v":1,"kind":"enrolment"}', b"{}" * 30000]
    for data in garbage:
        assert not envelope_validator(TOPIC_ENROL, data, "x")
        world.agent.publish(TOPIC_ENROL, data)
    assert world.service.drain() == []  # the validator dropped every one
    # Past a relay that does not validate, the handler refuses them one by one.
    shaped = b'{"v":1,"kind":"enrolment","sig":"x","sender":"y","body":"z"}'
    assert envelope_validator(TOPIC_ENROL, shaped, "x")
    assert not envelope_validator(TOPIC_AVAILABILITY, shaped, "x")  # wrong kind for the topic
    for data in [*garbage, shaped]:
        for topic in (TOPIC_ENROL, TOPIC_AVAILABILITY, TOPIC_INTERVENTION):
            assert world.service.handle(Message(topic, data, "mallory")).reason != "error"
    assert world.assignments() == []
    assert enrolled(world, agent_keys()) == 0  # the Leader still works


def test_availability_marks_a_host_online_with_its_slot_metrics(world: World) -> None:
    keys = agent_keys()
    host_id = enrolled(world, keys)
    assert host_view(world, host_id)["state"] == "unknown"
    world.agent.publish(TOPIC_AVAILABILITY, heartbeat(keys, host_id, 1, world.clock.now))
    assert [h.reason for h in world.service.drain()] == ["applied"]
    view = host_view(world, host_id)
    assert (view["state"], view["online"], view["agent_state"]) == ("online", True, "available")
    assert view["last_seen"] == now_text(world.clock.now)
    assert view["slots"][0]["availability"]["memory_free"] == 70 * 2**30
    assert view["slots"][0]["token"] == codec.encode(1, host_id, 0)


def test_a_silent_host_goes_offline_after_three_intervals_and_comes_back(world: World) -> None:
    keys = agent_keys()
    host_id = enrolled(world, keys)
    world.agent.publish(TOPIC_AVAILABILITY, heartbeat(keys, host_id, 1, world.clock.now))
    world.service.drain()
    world.clock.advance(89)
    assert world.service.sweep() == []
    assert host_view(world, host_id)["state"] == "online"
    world.clock.advance(2)
    assert world.service.sweep() == [(host_id, "node0001.lab")]
    assert host_view(world, host_id)["state"] == "offline"
    world.agent.publish(TOPIC_AVAILABILITY, heartbeat(keys, host_id, 2, world.clock.now))
    world.service.drain()
    assert host_view(world, host_id)["state"] == "online"


def test_offline_after_is_configurable(world: World) -> None:
    world.service.offline_after = 5.0
    keys = agent_keys()
    host_id = enrolled(world, keys)
    world.agent.publish(TOPIC_AVAILABILITY, heartbeat(keys, host_id, 1, world.clock.now))
    world.service.drain()
    world.clock.advance(4)
    assert world.service.sweep() == []
    world.clock.advance(2)
    assert world.service.sweep() == [(host_id, "node0001.lab")]


def test_leaving_marks_a_host_left_at_once(world: World) -> None:
    keys = agent_keys()
    host_id = enrolled(world, keys)
    world.agent.publish(TOPIC_AVAILABILITY, heartbeat(keys, host_id, 1, world.clock.now))
    world.clock.advance(1)
    world.agent.publish(TOPIC_AVAILABILITY, leaving(keys, host_id, 2, world.clock.now))
    assert [h.reason for h in world.service.drain()] == ["applied", "applied"]
    view = host_view(world, host_id)
    assert (view["state"], view["online"], view["left_reason"]) == ("left", False, "shutdown")
    world.clock.advance(1000)
    assert world.service.sweep() == []  # left is not re-reported as offline


def test_availability_from_an_unknown_or_forged_key_is_refused(world: World) -> None:
    keys, other = agent_keys(), agent_keys()
    host_id = enrolled(world, keys)
    other_id = enrolled(world, other, host=2)
    stranger = agent_keys()
    world.agent.publish(TOPIC_AVAILABILITY, heartbeat(stranger, host_id, 1, world.clock.now))
    forged = bytearray(heartbeat(keys, host_id, 1, world.clock.now))
    forged[forged.index(b'"seq":1') + 6] = ord("9")
    world.agent.publish(TOPIC_AVAILABILITY, bytes(forged))
    world.agent.publish(TOPIC_AVAILABILITY, heartbeat(other, host_id, 1, world.clock.now))
    reasons = [h.reason for h in world.service.drain()]
    assert reasons == ["unknown-key", "bad-signature", "key-mismatch"]
    assert host_view(world, host_id)["state"] == "unknown"
    assert host_view(world, other_id)["state"] == "unknown"


def test_availability_of_a_revoked_host_is_refused(world: World) -> None:
    keys = agent_keys()
    host_id = enrolled(world, keys)
    world.service.registrar.registry.revoke(str(host_id))
    world.agent.publish(TOPIC_AVAILABILITY, heartbeat(keys, host_id, 1, world.clock.now))
    assert [h.reason for h in world.service.drain()] == ["unknown-key"]


def test_a_replayed_or_older_heartbeat_is_dropped(world: World) -> None:
    keys = agent_keys()
    host_id = enrolled(world, keys)
    first = heartbeat(keys, host_id, 5, world.clock.now, state="busy")
    world.agent.publish(TOPIC_AVAILABILITY, first)
    world.agent.publish(TOPIC_AVAILABILITY, first)
    world.agent.publish(TOPIC_AVAILABILITY, heartbeat(keys, host_id, 4, world.clock.now))
    world.clock.advance(30)
    world.agent.publish(TOPIC_AVAILABILITY, heartbeat(keys, host_id, 6, world.clock.now))
    reasons = [h.reason for h in world.service.drain()]
    assert reasons == ["applied", "replayed", "replayed", "applied"]
    assert host_view(world, host_id)["seq"] == 6
    # An old leaving announcement replayed after newer heartbeats changes nothing.
    world.agent.publish(
        TOPIC_AVAILABILITY, leaving(keys, host_id, 5, world.clock.now - timedelta(seconds=30))
    )
    assert [h.reason for h in world.service.drain()] == ["replayed"]
    assert host_view(world, host_id)["state"] == "online"


def test_an_agent_whose_counter_restarted_is_heard_again(world: World) -> None:
    keys = agent_keys()
    host_id = enrolled(world, keys)
    world.agent.publish(TOPIC_AVAILABILITY, heartbeat(keys, host_id, 500, world.clock.now))
    world.clock.advance(10)
    world.agent.publish(TOPIC_AVAILABILITY, heartbeat(keys, host_id, 0, world.clock.now))
    assert [h.reason for h in world.service.drain()] == ["applied", "applied"]
    assert host_view(world, host_id)["seq"] == 0
    # Not a gap: a restarted counter is not counted as missed heartbeats.
    view = host_view(world, host_id)
    assert (view["heartbeats_heard"], view["heartbeats_missed"]) == (2, 0)


def test_the_leader_counts_heartbeats_heard_and_the_seqs_it_never_got(world: World) -> None:
    keys = agent_keys()
    host_id = enrolled(world, keys)
    start = world.clock.now
    # 3 and 4 are lost on the way, 5 is replayed, and 3 turns up late, after 5.
    for seq in (1, 2, 5, 5, 3, 6):
        at = start + timedelta(seconds=seq)
        world.agent.publish(TOPIC_AVAILABILITY, heartbeat(keys, host_id, seq, at))
    world.clock.advance(6)
    reasons = [h.reason for h in world.service.drain()]
    assert reasons == ["applied", "applied", "applied", "replayed", "replayed", "applied"]
    view = host_view(world, host_id)
    assert (view["heartbeats_heard"], view["heartbeats_missed"], view["seq"]) == (4, 2, 6)
    world.clock.advance(1)
    world.agent.publish(TOPIC_AVAILABILITY, leaving(keys, host_id, 7, world.clock.now))
    world.service.drain()
    view = host_view(world, host_id)
    assert (view["heartbeats_heard"], view["heartbeats_missed"]) == (5, 2)


def test_intervention_calls_are_stored_listed_folded_and_closed(world: World) -> None:
    keys = agent_keys()
    host_id = enrolled(world, keys)
    first = call(keys, "node0001.lab", host_id, world.clock.now)
    world.agent.publish(TOPIC_INTERVENTION, first)
    world.agent.publish(TOPIC_INTERVENTION, first)  # replayed
    world.clock.advance(60)
    world.agent.publish(TOPIC_INTERVENTION, call(keys, "node0001.lab", host_id, world.clock.now))
    world.agent.publish(
        TOPIC_INTERVENTION, call(agent_keys(), "node0001.lab", host_id, world.clock.now)
    )
    world.agent.publish(TOPIC_INTERVENTION, call(keys, "node0002.lab", None, world.clock.now))
    reasons = [h.reason for h in world.service.drain()]
    assert reasons == ["stored", "replayed", "stored", "unknown-key", "key-mismatch"]
    assert world.service.calls is not None
    (stored,) = world.service.calls.calls()
    assert (stored.hostname, stored.host_id, stored.reason, stored.count) == (
        "node0001.lab",
        host_id,
        "gpu-lost",
        2,
    )
    closed = world.service.calls.close_call(stored.id, now=world.clock.now, note="reseated")
    assert (closed.status, closed.note) == ("closed", "reseated")
    assert world.service.calls.calls() == []
    assert len(world.service.calls.calls(include_closed=True)) == 1
    with pytest.raises(CallError):
        world.service.calls.close_call(stored.id, now=world.clock.now)
    # After closing, the same trouble opens a new call.
    world.agent.publish(TOPIC_INTERVENTION, call(keys, "node0001.lab", host_id, world.clock.now))
    world.service.drain()
    assert [c.id for c in world.service.calls.calls()] == [stored.id + 1]


def test_a_host_held_for_approval_raises_a_call_and_its_agent_may_call_too(
    world: World, leader_dir: Path
) -> None:
    (leader_dir / "join-tokens").write_text("secret-token\n")
    world.service.registrar.join_tokens = frozenset({"secret-token"})
    keys = agent_keys()
    envelope = world.enrol(keys, host=7)
    assert [h.reason for h in world.service.drain()] == ["not-approved"]
    assert world.assignments() == []
    world.agent.publish(TOPIC_INTERVENTION, call(keys, "node0007.lab", None, world.clock.now))
    assert [h.reason for h in world.service.drain()] == ["stored"]
    assert world.service.calls is not None
    calls = world.service.calls.calls()
    assert [(c.origin, c.reason) for c in calls] == [
        ("leader", "approval-pending"),
        ("agent", "gpu-lost"),
    ]
    # The operator approves; the agent's outbox, still resending, now gets its assignment.
    world.service.registrar.approve("node0007.lab", now=world.clock.now)
    world.clock.advance(5)
    world.agent.publish(TOPIC_ENROL, envelope)
    assert [(h.reason, h.published) for h in world.service.drain()] == [("replayed", True)]
    (data,) = world.assignments()
    assert open_assignment(data, keys, world.leader_keys.bundle).host_id == 0


def test_what_the_mesh_node_drops_reaches_leader_calls_once_per_increase(
    leader_dir: Path, leader_keys: LeaderKeys, caplog: pytest.LogCaptureFixture
) -> None:
    class MeshLike:
        """A transport that, like the mesh's, counts what its node dropped."""

        def __init__(self, inner: MemoryTransport) -> None:
            self.inner, self.counts = inner, dict[str, int]()

        def subscribe(self, topic: str) -> Any:
            return self.inner.subscribe(topic)

        def publish(self, topic: str, data: bytes) -> None:
            self.inner.publish(topic, data)

        def drop_counts(self) -> dict[str, int]:
            return dict(self.counts)

    transport = MeshLike(MemoryBus().join("leader", validator=envelope_validator))
    with Registrar(leader_dir) as leader, CallBook(leader_dir / CALLS_FILE) as calls:
        service = Dispatcher(leader, transport, calls=calls, clock=Clock())  # type: ignore[arg-type]
        service.report_drops()
        assert calls.calls() == []
        transport.counts = {"originator over its rate": 40, "send queue full": 3}
        service.report_drops()
        service.report_drops()  # nothing new: nothing more
        transport.counts = {"originator over its rate": 45, "send queue full": 3}
        service.report_drops()
        (folded,) = [c for c in calls.calls() if c.reason == "mesh-dropped"]
        assert folded.count == 2, folded
        told = [r.getMessage() for r in caplog.records if "the mesh node dropped" in r.getMessage()]
        assert told == [
            "the mesh node dropped 40 message(s): originator over its rate (40 since the Leader"
            " started), 3 message(s): send queue full (3 since the Leader started)",
            "the mesh node dropped 5 message(s): originator over its rate (45 since the Leader"
            " started)",
        ]
        service.close()


def test_a_host_back_from_offline_gets_its_assignment_with_the_current_read_key(
    world: World,
) -> None:
    from cooee_agent.leader.host_records import ReadKey

    keys = agent_keys()
    host_id = enrolled(world, keys)
    world.agent.publish(TOPIC_AVAILABILITY, heartbeat(keys, host_id, 1, world.clock.now))
    world.service.drain()
    assert world.assignments() == []  # online for the first time: nothing to send
    # The Leader runs the DHT, and its read key rotated while the host was silent.
    world.service.registrar.read_key = ReadKey(world.state_dir)
    world.clock.advance(91)
    world.service.sweep()
    world.agent.publish(TOPIC_AVAILABILITY, heartbeat(keys, host_id, 2, world.clock.now))
    world.service.drain()
    (again,) = world.assignments()
    assignment = open_assignment(again, keys, world.leader_keys.bundle)
    assert assignment.host_id == host_id and assignment.has_read_key
    assert assignment.read_key == world.service.registrar.read_key.secret
    # Online to online sends nothing more.
    world.agent.publish(TOPIC_AVAILABILITY, heartbeat(keys, host_id, 3, world.clock.now))
    world.service.drain()
    assert world.assignments() == []
