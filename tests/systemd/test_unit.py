"""The shipped unit, sysusers.d and tmpfiles.d files: scored, verified, applied to a scratch root.

`systemd-analyze verify` insists that ExecStart names an existing binary, and the unit names
/usr/bin/cooee-agent, where the Debian package puts it. The test verifies a copy whose ExecStart
points at this checkout's console script instead; every other line is the shipped one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNIT = SYSTEMD / "cooee-agent.service"
SYSUSERS = SYSTEMD / "cooee-agent.sysusers"
TMPFILES = SYSTEMD / "cooee-agent.tmpfiles"
MAX_EXPOSURE = 2.0

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd is not installed (not Linux)"
)


def directives(text: str) -> dict[str, list[str]]:
    """Key -> values, in order; unit files repeat keys, so configparser will not do."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_security_exposure_is_at_most_two(unit_report: list[str]) -> None:
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


def test_verify_prints_nothing(tmp_path: Path) -> None:
    binary = Path(sys.executable).with_name("cooee-agent")
    assert binary.exists(), "the console script is missing: run scripts/setup"
    text = UNIT.read_text()
    assert "ExecStart=/usr/bin/cooee-agent run\n" in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace("ExecStart=/usr/bin/cooee-agent", f"ExecStart={binary}"))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, SYSTEMD_LOG_COLOR="0"),
    )
    assert result.stderr == ""
    assert result.returncode == 0


def test_verify_does_complain_about_a_bad_unit(tmp_path: Path) -> None:
    # The check above must be able to fail: an unknown key is a warning on stderr, exit 0.
    copy = tmp_path / UNIT.name
    binary = Path(sys.executable).with_name("cooee-agent")
    text = UNIT.read_text().replace("ExecStart=/usr/bin/cooee-agent", f"ExecStart={binary}")
    copy.write_text(text.replace("WatchdogSec=30", "WatchdogSec=30\nWatchDogSecs=30"))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert "WatchDogSecs" in result.stderr


def test_unit_keeps_what_the_agent_needs() -> None:
    unit = directives(UNIT.read_text())
    assert unit["Type"] == ["notify"]
    assert unit["ExecStart"] == ["/usr/bin/cooee-agent run"]
    assert unit["User"] == ["cooee-agent"]
    assert unit["StateDirectory"] == ["cooee-agent"]
    assert unit["StateDirectoryMode"] == ["0700"]
    assert unit["ConfigurationDirectory"] == ["cooee-agent"]
    assert unit["WatchdogSec"] == ["30"]
    assert unit["Restart"] == ["on-failure"]
    assert "TimeoutStopSec" in unit
    assert set(unit["SupplementaryGroups"][0].split()) == {"video", "render"}
    families = set(" ".join(unit["RestrictAddressFamilies"]).split())
    assert families == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    allowed = {value.split()[0] for value in unit["DeviceAllow"]}
    assert {"char-nvidia*", "char-drm"} <= allowed
    assert unit["DevicePolicy"] == ["closed"]
    # PrivateDevices hides /dev/nvidia*, PrivateNetwork the mesh and udev, ProcSubset=pid NVML's
    # /proc/driver/nvidia: none of them may creep in.
    for forbidden in ("PrivateDevices", "PrivateNetwork", "ProcSubset"):
        assert forbidden not in unit


@pytest.fixture
def scratch_root(tmp_path: Path) -> Path:
    """A directory tree with /etc/passwd and /etc/group, the sysusers file applied to it."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\nvideo:x:44:\n")
    (tmp_path / "var" / "lib").mkdir(parents=True)
    subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return tmp_path


def test_sysusers_creates_the_user_in_the_gpu_groups(scratch_root: Path) -> None:
    passwd = {line.split(":")[0]: line.split(":") for line in _lines(scratch_root / "etc/passwd")}
    groups = {line.split(":")[0]: line.split(":") for line in _lines(scratch_root / "etc/group")}
    user = passwd["cooee-agent"]
    assert int(user[2]) < 1000  # a system user
    assert user[5] == "/var/lib/cooee-agent"
    assert user[6].endswith("nologin")
    assert "cooee-agent" in groups["video"][3].split(",")
    assert "cooee-agent" in groups["render"][3].split(",")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root (CI runs as root)")
def test_tmpfiles_make_state_private_and_config_group_readable(scratch_root: Path) -> None:
    (scratch_root / "etc" / "cooee-agent").mkdir()
    config = scratch_root / "etc" / "cooee-agent" / "config.toml"
    config.write_text("")
    config.chmod(0o644)
    subprocess.run(
        ["systemd-tmpfiles", f"--root={scratch_root}", "--create", str(TMPFILES)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    user = next(
        line.split(":") for line in _lines(scratch_root / "etc/passwd") if line.startswith("cooee-")
    )
    uid, gid = int(user[2]), int(user[3])
    state = (scratch_root / "var" / "lib" / "cooee-agent").stat()
    assert (state.st_mode & 0o7777, state.st_uid, state.st_gid) == (0o700, uid, gid)
    status = config.stat()
    assert (status.st_mode & 0o7777, status.st_uid, status.st_gid) == (0o640, 0, gid)
    assert (scratch_root / "etc" / "cooee-agent").stat().st_mode & 0o7777 == 0o755


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line]
