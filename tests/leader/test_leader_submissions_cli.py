"""``leader submissions``, ``submission show`` and ``audit verify|export`` on a Leader that has
received nothing yet, and on unknown ids: they answer, create nothing, and name what is wrong."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cooee_agent.leader.submission_book import SUBMISSIONS_FILE

ENTRY = "from cooee_agent.cli import main; main()"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", ENTRY, *args], capture_output=True, text=True, timeout=60
    )


def test_nothing_received_lists_nothing_and_creates_nothing(leader_dir: Path) -> None:
    listed = cli("leader", "submissions", "--json", "--state-dir", str(leader_dir))
    assert (listed.returncode, json.loads(listed.stdout)) == (0, [])
    assert not (leader_dir / SUBMISSIONS_FILE).exists()
    shown = cli("leader", "submission", "show", "0" * 32, "--state-dir", str(leader_dir))
    assert shown.returncode == 1 and "none was received yet" in shown.stderr


def test_an_empty_log_verifies_and_exports_nothing(leader_dir: Path) -> None:
    verified = cli("leader", "audit", "verify", "--json", "--state-dir", str(leader_dir))
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["ok"] is True
    exported = cli("leader", "audit", "export", "--state-dir", str(leader_dir))
    assert (exported.returncode, exported.stdout) == (0, "")
    assert not (leader_dir / SUBMISSIONS_FILE).exists()


def test_a_bad_state_filter_is_named(leader_dir: Path) -> None:
    result = cli("leader", "submissions", "--state", "lost", "--state-dir", str(leader_dir))
    assert result.returncode == 1 and "--state must be one of" in result.stderr
