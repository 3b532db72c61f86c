"""`cooee-agent dev`: a throw-away Leader enrols this host over the loopback mesh, live."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cooee_agent.identity import token

CLI = Path(sys.executable).with_name("cooee-agent")


@pytest.mark.slow
def test_dev_enrols_this_host_and_shows_heartbeats_the_leader_heard(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(CLI),
            "dev",
            "--json",
            "--heartbeats",
            "2",
            "--interval",
            "1",
            "--state-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [event["event"] for event in events]
    assert kinds[0] == "leader"
    assert all("/ip4/127.0.0.1/" in addr for addr in events[0]["addrs"])
    assigned = next(event for event in events if event["event"] == "assigned")
    assert assigned["tokens"], "an assignment carries at least slot 0"
    for slot in assigned["tokens"]:
        decoded = token.decode(slot["token"])
        assert (decoded.host_id, decoded.gpu_slot) == (assigned["host_id"], slot["slot"])
    beats = [event for event in events if event["event"] == "heartbeat"]
    assert len(beats) == 2
    assert beats[0]["seq"] < beats[1]["seq"]
    assert {beat["leader_state"] for beat in beats} == {"online"}
    # The state was kept where it was asked to be: the Leader's registry and the agent's keys.
    assert (tmp_path / "leader" / "registry.sqlite3").exists()
    assert (tmp_path / "agent" / "assignment.json").stat().st_mode & 0o077 == 0


def test_dev_help_explains_the_loopback_flow() -> None:
    result = subprocess.run([str(CLI), "dev", "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert "--heartbeats" in result.stdout and "127.0.0.1" in result.stdout
