"""Under umockdev, adding and removing an AMD GPU re-enrols the daemon with the new tuples."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = Path(__file__).with_name("umockdev_daemon.py")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="udev is Linux only")
def test_adding_and_removing_a_gpu_re_enrols_with_the_new_tuples() -> None:
    wrapper = shutil.which("umockdev-wrapper")
    assert wrapper, "umockdev-wrapper is missing: run scripts/setup"
    result = subprocess.run(
        [wrapper, sys.executable, "-W", "ignore", str(CHILD)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT_ROOT,
        env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    steps = {line["step"]: line for line in map(json.loads, result.stdout.splitlines())}
    assert steps["start"]["slots"] == ["0000:03:00.0"], result.stderr[-3000:]
    assert steps["add"]["slots"] == ["0000:03:00.0", "0000:04:00.0"], result.stderr[-3000:]
    assert steps["remove"]["slots"] == ["0000:03:00.0"], result.stderr[-3000:]
    host_ids = {steps[name]["host_id"] for name in ("start", "add", "remove")}
    assert len(host_ids) == 1  # the same host throughout: re-enrolment, not a new host
    assert steps["remove"]["accepted"] == 3
