"""Mesh input that fails the Leader's cheap pre-check is counted by reason and said once per
window at INFO, never a line per message and never in silence."""

from __future__ import annotations

import json
import logging

import pytest

from cooee_agent.bus.memory import MemoryBus
from cooee_agent.bus.transport import MAX_MESSAGE_BYTES
from cooee_agent.leader.precheck import WINDOW_S, PrecheckDrops, precheck
from cooee_agent.protocol.kinds import TOPIC_AVAILABILITY, TOPIC_ENROL

SHAPED = json.dumps({"v": 1, "kind": "enrolment", "sig": "s", "sender": "a", "body": {}}).encode()


@pytest.mark.parametrize(
    ("topic", "data", "reason"),
    [
        ("cooee/nothing/v1", SHAPED, "unknown-topic"),
        (TOPIC_ENROL, b"{" + b" " * MAX_MESSAGE_BYTES + b"}", "oversized"),
        (TOPIC_ENROL, b"hello", "not-json"),
        (TOPIC_ENROL, b"{nope", "not-json"),
        (TOPIC_ENROL, b'{"v": 1}', "not-an-envelope"),
        (TOPIC_AVAILABILITY, SHAPED, "wrong-kind"),
        (TOPIC_ENROL, SHAPED, None),
    ],
)
def test_each_drop_has_its_reason(topic: str, data: bytes, reason: str | None) -> None:
    assert precheck(topic, data) == reason


def test_drops_are_counted_and_said_once_per_window(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    drops = PrecheckDrops(clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="cooee_agent.leader.precheck"):
        for _ in range(500):
            assert not drops(TOPIC_ENROL, b"garbage", "peer")
            now[0] += 0.1  # 50 s of a peer sending garbage ten times a second
        assert not drops(TOPIC_AVAILABILITY, SHAPED, "peer")
        assert drops(TOPIC_ENROL, SHAPED, "peer")
        assert caplog.records == []  # still inside the first window
        now[0] += WINDOW_S
        assert not drops(TOPIC_ENROL, b"{" * 10, "peer")
        drops.flush()
    assert drops.totals() == {"not-json": 501, "wrong-kind": 1}
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["mesh pre-check dropped 502 message(s) in 110 s: not-json 501, wrong-kind 1"]
    assert caplog.records[0].levelno == logging.INFO


def test_the_leaders_validator_on_a_bus_drops_and_counts() -> None:
    drops = PrecheckDrops()
    bus = MemoryBus()
    leader = bus.join("leader", validator=drops)
    subscription = leader.subscribe(TOPIC_ENROL)
    agent = bus.join("agent")
    agent.publish(TOPIC_ENROL, b"not json at all")
    agent.publish(TOPIC_ENROL, SHAPED)
    first = subscription.get(timeout=5)
    assert first is not None and first.data == SHAPED
    assert subscription.get(timeout=0) is None
    assert drops.totals() == {"not-json": 1}
