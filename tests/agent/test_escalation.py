"""When the daemon calls for an operator: once per episode, only past the threshold."""

from __future__ import annotations

from cooee_agent.agent.escalation import Escalation


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_degraded_episode_calls_once_past_the_threshold_and_again_after_recovery() -> None:
    clock = Clock()
    escalation = Escalation(clock)
    escalation.observe("degraded", ())
    assert escalation.due(("ollama down",), None, 10) == []
    clock.now += 10
    (call,) = escalation.due(("ollama down",), None, 10)
    assert call.reason == "degraded" and call.detail == "degraded for 10 s: ollama down"
    escalation.observe("degraded", ())
    clock.now += 100
    assert escalation.due(("ollama down",), None, 10) == []
    escalation.observe("available", ())
    escalation.observe("degraded", ())
    clock.now += 10
    assert [c.reason for c in escalation.due((), None, 10)] == ["degraded"]


def test_a_pending_enrolment_calls_once_per_pending_episode() -> None:
    clock = Clock()
    escalation = Escalation(clock)
    first = clock.now
    clock.now += 10
    assert [c.reason for c in escalation.due((), first, 10)] == ["enrolment-pending"]
    assert escalation.due((), first, 10) == []
    second = clock.now
    clock.now += 10
    assert [c.reason for c in escalation.due((), second, 10)] == ["enrolment-pending"]


def test_a_lost_gpu_is_reported_once_until_it_comes_back() -> None:
    escalation = Escalation(Clock())
    assert escalation.observe("degraded", ("gpu-a", "gpu-a")) == ["gpu-a"]
    assert escalation.observe("degraded", ("gpu-a", "gpu-b")) == ["gpu-b"]
    assert escalation.observe("available", ()) == []
    assert escalation.observe("degraded", ("gpu-a",)) == ["gpu-a"]
