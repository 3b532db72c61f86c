"""The operator's path end to end, through real processes: keygen, enrol --dry-run from live
discovery, leader ingest, list --json, resolve; a flipped byte or a second ingest exits 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ENTRY = "from cooee_agent.cli import main; main()"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", ENTRY, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_enrol_dry_run_ingest_list_and_resolve(tmp_path: Path) -> None:
    leader_dir, agent_dir = tmp_path / "leader", tmp_path / "agent"
    keygen = cli("leader", "keygen", "--json", "--state-dir", str(leader_dir))
    assert keygen.returncode == 0, keygen.stderr
    bundle = json.loads(keygen.stdout)["bundle"]

    # Live discovery, Ollama pointed at a closed port so the test does not depend on one.
    enrol = cli(
        "enrol", "--non-interactive", "--leader-key", bundle, "--dry-run",
        "--ollama-host", "http://127.0.0.1:9",
        env={"COOEE_STATE_DIR": str(agent_dir)},
    )  # fmt: skip
    if enrol.returncode == 1 and "no usable MAC" in enrol.stderr:
        pytest.skip("this machine has no interface with a MAC address")
    assert enrol.returncode == 0, enrol.stderr
    envelope = tmp_path / "enrolment.json"
    envelope.write_text(enrol.stdout)

    ingest = cli("leader", "ingest", "--state-dir", str(leader_dir), str(envelope))
    assert ingest.returncode == 0, ingest.stderr
    hosts = json.loads(cli("leader", "list", "--json", "--state-dir", str(leader_dir)).stdout)
    assert len(hosts) == 1 and hosts[0]["status"] == "active" and hosts[0]["host_id"] == 0
    token = hosts[0]["slots"][0]["token"]
    resolved = cli("resolve", token, "--json", "--state-dir", str(leader_dir))
    assert resolved.returncode == 0, resolved.stderr
    assert json.loads(resolved.stdout)["hostname"] == hosts[0]["hostname"]

    again = cli("leader", "ingest", "--state-dir", str(leader_dir), str(envelope))
    assert again.returncode == 1 and "replayed" in again.stderr

    data = bytearray(envelope.read_bytes())
    data[len(data) // 2] ^= 0x01
    envelope.write_bytes(bytes(data))
    flipped = cli("leader", "ingest", "--state-dir", str(leader_dir), str(envelope))
    assert flipped.returncode == 1
    assert "refused: bad-signature" in flipped.stderr or "refused: schema" in flipped.stderr


def test_enrol_without_non_interactive_points_at_the_flag(tmp_path: Path) -> None:
    result = cli("enrol", env={"COOEE_STATE_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert "--non-interactive" in result.stderr


def test_approve_and_revoke_name_unknown_hosts(tmp_path: Path) -> None:
    assert cli("leader", "keygen", "--state-dir", str(tmp_path)).returncode == 0
    result = cli("resolve", "4001Y", "--state-dir", str(tmp_path))
    assert result.returncode == 1 and "no registry" in result.stderr


def test_resolve_refuses_a_valid_token_of_a_version_no_leader_issues(tmp_path: Path) -> None:
    from cooee_agent.identity import token as codec

    assert cli("leader", "keygen", "--state-dir", str(tmp_path)).returncode == 0
    odd = codec.encode(7, 0, 0, reserved=3)  # a well-formed token, never issued
    result = cli("resolve", odd, "--state-dir", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert "version 7 with reserved bits 3" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
