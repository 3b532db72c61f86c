"""``leader calls`` and ``leader calls close`` through the CLI, on a real calls file."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from cooee_agent.leader.calls import CALLS_FILE, CallBook

ENTRY = "from cooee_agent.cli import main; main()"
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", ENTRY, *args], capture_output=True, text=True, timeout=60
    )


def test_no_calls_file_lists_nothing_and_creates_nothing(tmp_path: Path) -> None:
    result = cli("leader", "calls", "--json", "--state-dir", str(tmp_path))
    assert (result.returncode, json.loads(result.stdout)) == (0, [])
    assert not (tmp_path / CALLS_FILE).exists()


def test_calls_are_listed_closed_with_a_note_and_kept_for_all(tmp_path: Path) -> None:
    with CallBook(tmp_path / CALLS_FILE) as book:
        first = book.record_leader_call(
            hostname="node0001.lab", mac="020000000001", host_id=None, severity="warning",
            reason="approval-pending", detail="held for 'leader approve'", now=NOW,
        )  # fmt: skip
    text = cli("leader", "calls", "--state-dir", str(tmp_path))
    assert text.returncode == 0 and "approval-pending" in text.stdout
    assert "node0001.lab" in text.stdout
    closed = cli(
        "leader",
        "calls",
        "close",
        str(first.id),
        "--note",
        "approved",
        "--state-dir",
        str(tmp_path),
    )
    assert closed.returncode == 0, closed.stderr
    assert json.loads(cli("leader", "calls", "--json", "--state-dir", str(tmp_path)).stdout) == []
    (kept,) = json.loads(
        cli("leader", "calls", "--all", "--json", "--state-dir", str(tmp_path)).stdout
    )
    assert (kept["status"], kept["note"], kept["origin"]) == ("closed", "approved", "leader")
    again = cli("leader", "calls", "close", str(first.id), "--state-dir", str(tmp_path))
    assert again.returncode == 1 and again.stderr.startswith("cooee-agent: error: call")
    missing = cli("leader", "calls", "close", "99", "--state-dir", str(tmp_path))
    assert missing.returncode == 1 and "no call with id 99" in missing.stderr
