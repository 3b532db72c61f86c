"""One process per state directory: an exclusive lock held by ``run``, ``leader serve`` and
``leader ingest`` for as long as they live.

Two agents on one state directory (a VM cloned with its state) share one identity and cut each
other off at the Leader; two Leaders on one directory share a peer id and delete each other's
``leader.addrs``. The lock is ``flock`` on ``STATE_DIR/lock``: the kernel drops it when the holder
dies, however it dies, so a stale lock file never blocks a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cooee_agent.errors import CooeeError

LOCK_FILE = "lock"


class StateDirBusy(CooeeError):
    """Another live process holds the state directory."""


@contextmanager
def hold_state_dir(state_dir: Path, role: str) -> Iterator[None]:
    """Hold ``state_dir`` exclusively while the block runs; StateDirBusy names the holder."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Private whatever existed before (mkdir's mode applies only to a directory it creates): it
    # holds keys and, at the Leader, the registry. A directory someone else owns is left as is.
    with contextlib.suppress(PermissionError):
        os.chmod(state_dir, 0o700)
    path = state_dir / LOCK_FILE
    # Opened in place, never replaced: the lock belongs to this inode, so the atomic writer
    # (which swaps in a new file) must not be used here.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateDirBusy(
                f"{state_dir} is in use by {_holder(fd)}; one process per state directory"
            ) from None
        os.fchmod(fd, 0o600)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {role}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _holder(fd: int) -> str:
    """'cooee-agent run, pid 1234' from the lock file (what the holder wrote on taking it)."""
    text = os.pread(fd, 256, 0).decode("ascii", "replace").split()
    if not text or not text[0].isdigit():
        return "another process (pid unknown)"
    role = " ".join(text[1:]) or "another process"
    return f"{role}, pid {text[0]}"
