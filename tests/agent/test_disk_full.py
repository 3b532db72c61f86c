"""A full disk under a running agent: each item is published once per backoff, not every turn,
and a step failing every turn logs its traceback once, then a count per minute."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cooee_agent.agent.step_failures import REPEAT_WINDOW_S, StepFailures

CHILD = textwrap.dedent(
    """
    import resource, signal, sys
    from pathlib import Path
    from cooee_agent.bus.outbox import Outbox
    from cooee_agent.errors import TransportError

    now = [1000.0]
    outbox = Outbox.open_in(Path(sys.argv[1]), clock=lambda: now[0], base_delay=5.0)
    outbox.put("enrolment", "cooee/enrol/v1", b"x" * 100)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    wal = Path(sys.argv[1]) / "outbox.sqlite3-wal"
    size = wal.stat().st_size
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))  # the disk is now full
    published, refused = 0, 0
    for turn in range(10):  # ten turns of the main loop, a second apart
        for item in outbox.due():
            published += 1
            try:
                outbox.mark_sent(item.key)
            except TransportError as error:
                refused += 1
                assert "cannot record the send of enrolment" in str(error), error
        now[0] += 1.0
    print(published, refused)
    """
)


def test_a_full_disk_does_not_turn_the_outbox_into_a_publish_every_turn(tmp_path: Path) -> None:
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    result = subprocess.run(
        [sys.executable, str(child), str(tmp_path / "state")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    published, refused = map(int, result.stdout.split())
    assert refused >= 1  # the disk really was full
    assert published <= 3  # once, then after the backoff (5 s, jittered), never every turn


def test_a_step_failing_every_turn_logs_its_traceback_once_then_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    failures = StepFailures(logging.getLogger("test.steps"), clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="test.steps"):
        for _ in range(120):  # two minutes of turns, one a second
            failures.failed("write_status", OSError(28, "No space left on device"))
            now[0] += 1.0
        failures.succeeded("write_status")
    records = caplog.records
    assert sum(r.exc_info is not None for r in records) == 1
    repeats = [r.getMessage() for r in records if "still failing" in r.getMessage()]
    # Turns 0..119: the traceback at 0, one summary at REPEAT_WINDOW_S (60 s) counting 60.
    assert repeats == [
        f"main loop step write_status still failing (60 more time(s) in {REPEAT_WINDOW_S:.0f} s):"
        " OSError: [Errno 28] No space left on device"
    ]
    assert "works again" in records[-1].getMessage()
    assert len(records) == 3
