"""The Leader's unit, sysusers.d and tmpfiles.d files: scored, verified, and kept to what it needs.

Like test_unit.py for the agent: `systemd-analyze verify` needs ExecStart's binary to exist, so
it checks a copy pointing at this checkout's console script.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_unit import directives

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNIT = SYSTEMD / "cooee-leader.service"
AGENT_UNIT = SYSTEMD / "cooee-agent.service"
SYSUSERS = SYSTEMD / "cooee-leader.sysusers"
TMPFILES = SYSTEMD / "cooee-leader.tmpfiles"
MAX_EXPOSURE = 2.0

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd is not installed (not Linux)"
)


def test_leader_security_exposure_is_at_most_two(unit_report: list[str]) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    score = float(match.group(1))
    unit_report.append(
        f"systemd-analyze security --offline=true {UNIT.name}: exposure {score} {match.group(2)}"
        f" (limit {MAX_EXPOSURE})"
    )
    assert score <= MAX_EXPOSURE


def test_leader_unit_verifies_clean(tmp_path: Path) -> None:
    binary = Path(sys.executable).with_name("cooee-agent")
    assert binary.exists(), "the console script is missing: run scripts/setup"
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace("/usr/bin/cooee-agent", str(binary)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, SYSTEMD_LOG_COLOR="0"),
    )
    assert result.stderr == ""
    assert result.returncode == 0


def test_leader_unit_keeps_what_the_leader_needs() -> None:
    unit = directives(UNIT.read_text())
    assert unit["Type"] == ["notify"]
    assert unit["NotifyAccess"] == ["main"]
    assert unit["ExecStart"] == ["/usr/bin/cooee-agent leader serve"]
    assert unit["User"] == ["cooee-leader"] and unit["Group"] == ["cooee-leader"]
    assert unit["StateDirectory"] == ["cooee-leader"]
    assert unit["StateDirectoryMode"] == ["0700"]
    assert unit["Environment"] == ["COOEE_STATE_DIR=/var/lib/cooee-leader"]
    assert unit["SyslogIdentifier"] == ["cooee-leader"]
    assert unit["Restart"] == ["on-failure"]
    # The same watchdog and restart pace as the agent: one set of numbers for operators.
    agent = directives(AGENT_UNIT.read_text())
    for key in ("WatchdogSec", "RestartSec", "TimeoutStopSec"):
        assert unit[key] == agent[key], key
    # The Leader is reached by TCP from every host: no network sandbox may creep in.
    for forbidden in ("PrivateNetwork", "IPAddressDeny", "IPAddressAllow"):
        assert forbidden not in unit


def test_leader_has_its_own_user_and_private_state(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (tmp_path / "etc/group").write_text("root:x:0:\n")
    subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    user = next(
        line.split(":")
        for line in (tmp_path / "etc/passwd").read_text().splitlines()
        if line.startswith("cooee-leader:")
    )
    assert int(user[2]) < 1000 and user[5] == "/var/lib/cooee-leader"
    assert user[6].endswith("nologin")
    # No device groups: the Leader reads no GPU.
    assert "cooee-leader" not in (tmp_path / "etc/group").read_text().replace("cooee-leader:x:", "")
    assert TMPFILES.read_text().splitlines()[-1].split() == [
        "d",
        "/var/lib/cooee-leader",
        "0700",
        "cooee-leader",
        "cooee-leader",
        "-",
    ]
