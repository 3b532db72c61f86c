"""Running external commands for probes, behind an injectable runner so tests replay outputs."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence

# A runner takes argv and returns stdout as text; it raises OSError when the command cannot be
# run and subprocess.CalledProcessError / TimeoutExpired when it fails or hangs.
Runner = Callable[[Sequence[str]], str]

DEFAULT_COMMAND_TIMEOUT = 1.5


def run_command(argv: Sequence[str], timeout: float = DEFAULT_COMMAND_TIMEOUT) -> str:
    """Run argv without a shell, with a timeout, and return its stdout."""
    completed = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return completed.stdout
