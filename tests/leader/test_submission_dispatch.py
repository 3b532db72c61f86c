"""Submissions through the Leader's dispatcher on an in-process bus: the kinds table routes them
to their handler, the receipt comes back on the receipt topic, hostile envelopes are refused
with their reason and nothing stored, and the Leader keeps serving; the decision courier sends
what an operator decided."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from enrolment_factory import agent_keys, record

from cooee_agent.agent.submitting import dr_record, pr_record
from cooee_agent.bus.memory import MemoryBus, MemoryTransport
from cooee_agent.bus.transport import Message
from cooee_agent.leader.dispatch import Dispatcher, envelope_validator
from cooee_agent.leader.registrar import Registrar
from cooee_agent.leader.submission_book import SUBMISSIONS_FILE, SubmissionBook
from cooee_agent.leader.submissions import DecisionCourier
from cooee_agent.protocol.keys import AgentKeys, LeaderKeys
from cooee_agent.protocol.kinds import TOPIC_ENROL, TOPIC_RECEIPT, TOPIC_SUBMISSION
from cooee_agent.protocol.schema import canonical
from cooee_agent.protocol.sealing import open_from_leader, seal_enrolment, seal_to_leader

ADDRESS = "ucxl://any:admin@SLURP:context/#/docs/x.md"


class World:
    def __init__(self, leader_dir: Path, leader_keys: LeaderKeys) -> None:
        self.bus = MemoryBus()
        self.keys = leader_keys
        self.leader_transport = self.bus.join("leader", validator=envelope_validator)
        self.agent: MemoryTransport = self.bus.join("agent")
        self.registrar = Registrar(leader_dir)
        self.book = SubmissionBook(leader_dir / SUBMISSIONS_FILE)
        self.service = Dispatcher(self.registrar, self.leader_transport, submissions=self.book)
        self.replies = self.agent.subscribe(TOPIC_RECEIPT)

    def answers(self) -> list[bytes]:
        out = []
        while (message := self.replies.get(timeout=0)) is not None:
            out.append(message.data)
        return out

    def close(self) -> None:
        self.service.close()
        self.book.close()
        self.registrar.close()


@pytest.fixture
def world(leader_dir: Path, leader_keys: LeaderKeys) -> Iterator[World]:
    w = World(leader_dir, leader_keys)
    yield w
    w.close()


def enrol(world: World, keys: AgentKeys) -> None:
    world.agent.publish(TOPIC_ENROL, seal_enrolment(record(keys), keys, world.keys.bundle))
    assert [h.reason for h in world.service.drain()] == ["accepted"]


def a_pr() -> dict[str, Any]:
    return pr_record(title="t", address=ADDRESS, change=b"new text\n", form="document")


def test_a_pr_is_routed_by_the_kinds_table_and_receipted(world: World, keys: AgentKeys) -> None:
    enrol(world, keys)
    world.agent.publish(TOPIC_SUBMISSION, seal_to_leader("pr", a_pr(), keys, world.keys.bundle))
    (handled,) = world.service.drain()
    assert (handled.topic, handled.reason, handled.published) == (
        TOPIC_SUBMISSION,
        "received",
        True,
    )
    replies = [r for r in world.answers() if json.loads(r)["kind"] == "receipt"]
    receipt = open_from_leader(replies[0], keys, world.keys.bundle, ("receipt",))
    assert receipt["outcome"] == "received"


def test_the_batch_form_answers_each_message_in_order(world: World, keys: AgentKeys) -> None:
    from cooee_agent.leader.submissions import handle_submissions

    enrol(world, keys)
    good = seal_to_leader("pr", a_pr(), keys, world.keys.bundle)
    batch = [Message(TOPIC_SUBMISSION, data, "agent") for data in (good, b"{}", good)]
    handled = handle_submissions(world.service, batch)
    assert [h.reason for h in handled] == ["received", "schema", "replayed"]


def test_hostile_submissions_are_refused_and_the_leader_keeps_serving(
    world: World, keys: AgentKeys
) -> None:
    enrol(world, keys)
    good = seal_to_leader("dr", dr_record(title="d", status="proposed", context="c",
                                          decision="d"), keys, world.keys.bundle)  # fmt: skip
    envelope = json.loads(good)
    resigned = dict(envelope, sig="A" * 85 + "A")
    hostile = [
        b"not json",
        canonical(resigned),  # signature does not verify
        canonical({k: v for k, v in envelope.items() if k != "sig"}),  # unsigned
        canonical(dict(envelope, kind="pr")),  # the kind changed under the signature
        seal_to_leader("pr", a_pr(), agent_keys(), world.keys.bundle),  # unknown key
    ]
    for data in hostile:
        world.agent.publish(TOPIC_SUBMISSION, data)
    reasons = [h.reason for h in world.service.drain()]
    # Over the size limit (a mesh peer drops it; handed to the Leader here all the same).
    oversized = world.service.handle(Message(TOPIC_SUBMISSION, b"{" + b" " * 70_000 + b"}", "x"))
    assert oversized.reason == "schema"
    # Not JSON and unsigned: the mesh validator drops them before the handler.
    assert reasons == ["bad-signature", "bad-signature", "unknown-key"]
    assert world.book.submissions() == [] and list(world.book.audit_entries()) == []
    world.agent.publish(TOPIC_SUBMISSION, good)
    world.agent.publish(TOPIC_SUBMISSION, good)  # replayed: answered again, stored once
    assert [h.reason for h in world.service.drain()] == ["received", "replayed"]
    assert len(world.book.submissions()) == 1


def test_the_courier_sends_a_decision_made_by_another_process(
    world: World, keys: AgentKeys, leader_dir: Path
) -> None:
    enrol(world, keys)
    pr = a_pr()
    world.agent.publish(TOPIC_SUBMISSION, seal_to_leader("pr", pr, keys, world.keys.bundle))
    world.service.drain()
    world.answers()
    with SubmissionBook(leader_dir / SUBMISSIONS_FILE) as operator:  # the CLI's own connection
        operator.decide(pr["nonce"], "accepted", "good", world.keys, now=datetime.now(UTC))
    courier = DecisionCourier(leader_dir / SUBMISSIONS_FILE, world.leader_transport)
    assert courier.send_due(world.book) == 1
    assert courier.send_due(world.book) == 0  # sent once
    (reply,) = world.answers()
    decision = open_from_leader(reply, keys, world.keys.bundle, ("decision",))
    assert (decision["decision"], decision["reason"], decision["audit_seq"]) == (
        "accepted",
        "good",
        3,
    )
