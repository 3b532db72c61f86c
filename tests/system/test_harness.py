"""The harness itself: a container whose test fails leaves nothing behind on the host."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from nspawn import PROPAGATE, Container


class Boom(Exception):
    pass


def _host_processes_named(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and name in (entry / "cmdline").read_bytes().decode():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_a_failing_test_leaves_no_process_cgroup_mount_or_link(
    rootfs: Path, tmp_path: Path
) -> None:
    name = f"cooeeharness{os.getpid() % 1000}"
    box = Container(rootfs, name, log=tmp_path / "boot.log")
    with pytest.raises(Boom), box:
        state = box.run(["systemctl", "is-system-running"], check=False).stdout.strip()
        assert state in ("running", "degraded")
        # The agent-like process the test started inside, still running when the test fails.
        box.run(["systemd-run", "--unit=left-running", "sleep", "600"])
        raise Boom
    assert box.process is not None and box.process.poll() is not None
    assert not any(group.exists() for group in box.cgroups)
    assert not (PROPAGATE / name).exists()
    assert _host_processes_named(f"--machine={name}") == []
    assert str(rootfs) not in Path("/proc/self/mountinfo").read_text()
    # The host end of the veth (ve- and the machine name, shortened to fit 15 characters).
    assert [
        p.name for p in Path("/sys/class/net").iterdir() if p.name.startswith("ve-cooeeh")
    ] == []
