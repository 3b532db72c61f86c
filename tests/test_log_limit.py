"""Warnings anyone can cause are logged in full a few times an interval, then counted."""

from __future__ import annotations

import logging

import pytest

from cooee_agent.log_limit import MAX_KEYS, LimitedWarnings, flush_due

log = logging.getLogger("test.log_limit")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == log.name]


def test_each_key_is_logged_in_full_up_to_its_budget_then_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    limited = LimitedWarnings(log, per_interval=3, interval=60.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger=log.name):
        for n in range(10):
            limited.warning("schema", "refused: schema: %d", n)
        limited.warning("stale", "refused: stale")
        assert _lines(caplog) == [
            "refused: schema: 0",
            "refused: schema: 1",
            "refused: schema: 2",
            "refused: stale",
        ]
        clock.now += 61
        limited.warning("schema", "refused: schema: %d", 10)
    assert _lines(caplog)[4:] == [
        "7 more 'schema' warnings since 61 s ago, not logged one by one",
        "refused: schema: 10",
    ]


def test_flush_logs_what_is_pending_and_nothing_when_nothing_is(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limited = LimitedWarnings(log, per_interval=1, clock=Clock())
    with caplog.at_level(logging.WARNING, logger=log.name):
        limited.flush()
        assert _lines(caplog) == []
        limited.warning("k", "one")
        limited.warning("k", "two")
        limited.flush()
    assert _lines(caplog) == ["one", "1 more 'k' warning since 0 s ago, not logged one by one"]


def test_the_number_of_keys_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    limited = LimitedWarnings(log, per_interval=1, clock=Clock())
    with caplog.at_level(logging.WARNING, logger=log.name):
        for n in range(MAX_KEYS + 50):
            limited.warning(f"key-{n}", "line %d", n)
    # The keys past the bound share one budget: one line, not fifty.
    assert len(_lines(caplog)) == MAX_KEYS + 1


def test_flush_due_tells_the_counts_of_limiters_whose_interval_ended(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    limited = LimitedWarnings(log, per_interval=1, interval=60.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger=log.name):
        limited.warning("k", "one")
        limited.warning("k", "two")
        flush_due()
        assert _lines(caplog) == ["one"]  # not due yet
        clock.now += 60
        flush_due()
    assert _lines(caplog) == ["one", "1 more 'k' warning since 60 s ago, not logged one by one"]
