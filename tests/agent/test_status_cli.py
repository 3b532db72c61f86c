"""``cooee-agent status`` tells a running agent from a stopped, hung or absent one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from cooee_agent.agent.state import write_json
from cooee_agent.bus.outbox import Outbox
from cooee_agent.cli.status import STALE_AFTER, read_status
from cooee_agent.protocol.kinds import TOPIC_ENROL

ENTRY = "from cooee_agent.cli import main; main()"


def status_cli(state_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", ENTRY, "status", "--state-dir", str(state_dir), *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def written(state_dir: Path, *, pid: int, age: float = 0.0, running: bool = True) -> None:
    write_json(
        state_dir / "status.json",
        {
            "pid": pid,
            "running": running,
            "updated_at": time.time() - age,
            "updated": "2026-01-01T00:00:00Z",
            "enrolment": "enrolled",
            "host_id": 7,
            "hostname": "node1.lab",
            "tokens": [{"slot": 0, "gpu_id": "cpu", "token": "4007Z"}],
            "state": "available",
            "reasons": [],
            "peers": 2,
            "last_heartbeat": {"at": "2026-01-01T00:00:00Z", "seq": 5},
        },
    )


def test_no_status_file_means_no_agent(tmp_path: Path) -> None:
    result = status_cli(tmp_path)
    assert result.returncode == 1
    assert "no agent has run" in result.stdout


def test_a_fresh_status_of_a_live_process_is_running_with_the_outbox_depth(
    tmp_path: Path,
) -> None:
    written(tmp_path, pid=os.getpid())
    with Outbox.open_in(tmp_path) as outbox:
        outbox.put("enrolment", TOPIC_ENROL, b"{}")
    result = status_cli(tmp_path, "--json")
    assert result.returncode == 0, result.stderr
    value = json.loads(result.stdout)
    assert value["agent"] == "running" and value["host_id"] == 7 and value["outbox_depth"] == 1
    text = status_cli(tmp_path).stdout
    assert "host_id: 7" in text and "4007Z" in text and "peers connected: 2" in text


def test_an_old_status_of_a_live_process_is_stale(tmp_path: Path) -> None:
    written(tmp_path, pid=os.getpid(), age=STALE_AFTER + 5)
    assert read_status(tmp_path)["agent"] == "stale"
    assert "NOT RESPONDING" in status_cli(tmp_path).stdout


def test_a_dead_pid_or_a_clean_stop_is_stopped(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    written(tmp_path, pid=child.pid)
    assert read_status(tmp_path)["agent"] == "stopped"
    written(tmp_path, pid=os.getpid(), running=False)
    assert read_status(tmp_path)["agent"] == "stopped"
    assert "not running" in status_cli(tmp_path).stdout


def test_what_the_mesh_dropped_is_shown_and_an_ill_typed_count_is_named(tmp_path: Path) -> None:
    written(tmp_path, pid=os.getpid())
    status = json.loads((tmp_path / "status.json").read_text())
    status["mesh_drops"] = {"originator over its rate": 12, "send queue full": 3}
    write_json(tmp_path / "status.json", status)
    text = status_cli(tmp_path).stdout
    assert "mesh messages dropped since start: 12 originator over its rate, 3 send queue full" in (
        text
    )
    status["mesh_drops"] = {"over the size limit": "many"}
    write_json(tmp_path / "status.json", status)
    value = json.loads(status_cli(tmp_path, "--json").stdout)
    assert "mesh_drops" not in value and "mesh_drops" in value["status_error"]
