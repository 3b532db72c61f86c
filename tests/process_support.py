"""Helpers for tests that run cooee-agent as real processes on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TypeVar

# The console script's entry, run with this interpreter so the venv need not be on PATH.
ENTRY = "from cooee_agent.cli import main; main()"
# Mesh formation on a loaded 2-core machine takes seconds: waits poll up to this long.
DEADLINE = 60.0
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def until(probe: Callable[[], T | None], what: str, timeout: float = DEADLINE) -> T:
    """Poll ``probe`` until it returns something true; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``cooee-agent ARGS`` as a separate process."""
    return subprocess.run(
        [sys.executable, "-c", ENTRY, *args], capture_output=True, text=True, timeout=60
    )
