"""The durable outbox: written before publishing, resent with backoff, removed only on ack."""

from __future__ import annotations

import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cooee_agent.bus.memory import MemoryBus
from cooee_agent.bus.outbox import OUTBOX_FILE, Outbox
from cooee_agent.errors import TransportError
from cooee_agent.protocol.kinds import TOPIC_ASSIGNMENT, TOPIC_ENROL

CHILD = Path(__file__).with_name("outbox_child.py")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make(tmp_path: Path, clock: Clock, **options: float) -> Outbox:
    return Outbox.open_in(tmp_path, clock=clock, rng=lambda: 0.5, **options)  # rng 0.5: no jitter


def test_an_item_is_due_at_once_then_resent_with_exponential_backoff(tmp_path: Path) -> None:
    clock = Clock()
    outbox = make(tmp_path, clock, base_delay=5.0, max_delay=20.0)
    outbox.put("host-1", TOPIC_ENROL, b"sealed")
    sent: list[float] = []

    def publish(topic: str, data: bytes) -> None:
        assert (topic, data) == (TOPIC_ENROL, b"sealed")
        sent.append(clock.now)

    start = clock.now
    for _ in range(400):  # 100 s of a loop that pumps every 0.25 s
        outbox.pump(publish)
        clock.now += 0.25
    assert [t - start for t in sent] == [0.0, 5.0, 15.0, 35.0, 55.0, 75.0, 95.0]
    assert outbox.get("host-1").attempts == 7  # type: ignore[union-attr]


def test_jitter_spreads_resends_within_its_fraction(tmp_path: Path) -> None:
    clock = Clock()
    outbox = Outbox.open_in(tmp_path, clock=clock, base_delay=10.0, jitter=0.2)
    delays = set()
    for n in range(50):
        outbox.put(f"k{n}", TOPIC_ENROL, b"x")
        delays.add(round(outbox.mark_sent(f"k{n}") - clock.now, 6))  # type: ignore[operator]
    assert all(8.0 <= d <= 12.0 for d in delays) and len(delays) > 10


def test_ack_removes_the_item_and_only_that_item(tmp_path: Path) -> None:
    outbox = make(tmp_path, Clock())
    outbox.put("a", TOPIC_ENROL, b"1")
    outbox.put("b", TOPIC_ENROL, b"2")
    assert outbox.ack("a") is True
    assert outbox.ack("a") is False
    assert [i.key for i in outbox.items()] == ["b"] and outbox.depth() == 1


def test_putting_an_existing_key_replaces_it_and_makes_it_due_now(tmp_path: Path) -> None:
    clock = Clock()
    outbox = make(tmp_path, clock)
    outbox.put("host", TOPIC_ENROL, b"old")
    outbox.mark_sent("host")
    assert outbox.due() == []
    outbox.put("host", TOPIC_ENROL, b"new")
    [item] = outbox.due()
    assert (item.data, item.attempts) == (b"new", 0)


def test_a_failed_publish_is_rescheduled_not_retried_in_a_tight_loop(tmp_path: Path) -> None:
    clock = Clock()
    outbox = make(tmp_path, clock, base_delay=5.0)
    outbox.put("host", TOPIC_ENROL, b"x")

    def broken(topic: str, data: bytes) -> None:
        raise TransportError("mesh down")

    assert outbox.pump(broken) == 0
    assert outbox.due() == [] and outbox.next_due_in() == pytest.approx(5.0)
    assert outbox.depth() == 1


def test_next_due_in_says_how_long_a_loop_may_sleep(tmp_path: Path) -> None:
    clock = Clock()
    outbox = make(tmp_path, clock, base_delay=8.0)
    assert outbox.next_due_in() is None
    outbox.put("host", TOPIC_ENROL, b"x")
    assert outbox.next_due_in() == 0.0
    outbox.mark_sent("host")
    clock.now += 3.0
    assert outbox.next_due_in() == pytest.approx(5.0)


def test_the_outbox_file_is_private(tmp_path: Path) -> None:
    make(tmp_path / "state", Clock()).put("k", TOPIC_ENROL, b"x")
    assert stat.S_IMODE((tmp_path / "state" / OUTBOX_FILE).stat().st_mode) == 0o600


def test_an_outbox_from_a_newer_agent_is_refused(tmp_path: Path) -> None:
    make(tmp_path, Clock()).close()
    with sqlite3.connect(tmp_path / OUTBOX_FILE) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(TransportError, match="newer"):
        make(tmp_path, Clock())


def test_enrolment_is_resent_until_the_assignment_arrives_over_a_lossy_channel(
    tmp_path: Path,
) -> None:
    clock = Clock()
    bus = MemoryBus()
    agent, leader = bus.join("agent"), bus.join("leader")
    enrolments, assignments = leader.subscribe(TOPIC_ENROL), agent.subscribe(TOPIC_ASSIGNMENT)
    outbox = make(tmp_path, clock, base_delay=2.0)

    outbox.put("host-key", TOPIC_ENROL, b"enrolment")
    bus.partition("leader")  # the first sends are lost
    outbox.pump(agent.publish)
    clock.now += 2.0
    outbox.pump(agent.publish)
    assert enrolments.get(timeout=0.05) is None and outbox.depth() == 1

    bus.heal("leader")
    clock.now += 4.0
    assert outbox.pump(agent.publish) == 1
    assert enrolments.get(timeout=1) is not None
    leader.publish(TOPIC_ASSIGNMENT, b"assignment for host-key")
    reply = assignments.get(timeout=1)
    assert reply is not None and outbox.ack("host-key")
    assert outbox.depth() == 0


def _start_child(tmp_path: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(tmp_path / "state"), str(tmp_path / "wire"), mode],
        stdout=subprocess.PIPE,
        text=True,
    )


def _read_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"child exited with {proc.wait()}"
    return line.strip()


def test_an_item_survives_sigkill_between_publish_and_ack_and_is_resent(tmp_path: Path) -> None:
    child = _start_child(tmp_path, "publish-and-wait")
    try:
        assert _read_line(child) == "written"
        assert _read_line(child) == "published"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    assert (tmp_path / "wire").read_bytes() == b"enrolment-1\n"

    outbox = Outbox.open_in(tmp_path / "state", base_delay=0.2, max_delay=1.0)
    [item] = outbox.items()
    assert (item.key, item.topic, item.data, item.attempts) == (
        "host-1",
        TOPIC_ENROL,
        b"enrolment-1",
        1,
    )

    def publish(topic: str, data: bytes) -> None:
        with (tmp_path / "wire").open("ab") as wire:
            wire.write(data + b"\n")

    deadline = time.monotonic() + 10
    while outbox.pump(publish) == 0:
        assert time.monotonic() < deadline, "the item never became due again"
        time.sleep(0.05)
    assert (tmp_path / "wire").read_bytes() == b"enrolment-1\n" * 2
    assert outbox.ack("host-1") and outbox.depth() == 0


def test_sigkill_during_a_burst_of_writes_loses_no_acknowledged_write(tmp_path: Path) -> None:
    child = _start_child(tmp_path, "put-forever")
    confirmed = -1
    try:
        while confirmed < 200:
            confirmed = int(_read_line(child))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert child.stdout is not None
    for line in child.stdout:  # lines already written before the kill
        confirmed = int(line)

    outbox = Outbox.open_in(tmp_path / "state")
    keys = {item.key for item in outbox.items()}
    assert {f"key-{n}" for n in range(confirmed + 1)} <= keys
    outbox.close()
    with sqlite3.connect(tmp_path / "state" / OUTBOX_FILE) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
