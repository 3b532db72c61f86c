"""One process per state directory: a second holder is refused with the first one's pid, the
lock goes with its holder, and the directory is made private."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cooee_agent.state_lock import LOCK_FILE, StateDirBusy, hold_state_dir

TRY_LOCK = (
    "import sys; from pathlib import Path; from cooee_agent.state_lock import hold_state_dir\n"
    "try:\n"
    "    with hold_state_dir(Path(sys.argv[1]), 'second'): print('held')\n"
    "except Exception as error: print(error)\n"
)


def other_process_tries(state_dir: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", TRY_LOCK, str(state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_a_second_holder_is_told_who_holds_the_directory(tmp_path: Path) -> None:
    with hold_state_dir(tmp_path, "cooee-agent run"):
        said = other_process_tries(tmp_path)
        assert said == f"{tmp_path} is in use by cooee-agent run, pid {os.getpid()}; " + (
            "one process per state directory"
        )
        with pytest.raises(StateDirBusy), hold_state_dir(tmp_path, "again"):
            pass  # flock locks are per open file: this process's second open is refused too
    assert other_process_tries(tmp_path) == "held"  # released with its holder


def test_the_directory_and_lock_file_are_made_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    with hold_state_dir(state, "test"):
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        assert stat.S_IMODE((state / LOCK_FILE).stat().st_mode) == 0o600
