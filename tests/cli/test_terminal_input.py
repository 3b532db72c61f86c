"""Reading the operator's answers on a real pseudo-terminal: lines, secrets unechoed, end of
input, and Ctrl-C stopping the wait however late it lands."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest

CHILD = """
import signal, sys, termios
signal.signal(signal.SIGINT, signal.default_int_handler)
from cooee_agent.cli.terminal_input import read_line
before = termios.tcgetattr(0)
try:
    answer = read_line("name? ", echo=sys.argv[1] == "echo")
except KeyboardInterrupt:
    print("[interrupted]", flush=True)
    raise SystemExit(130)
except EOFError:
    print("[eof]", flush=True)
    raise SystemExit(3)
print(f"[got {answer!r}]", flush=True)
print("[restored]" if termios.tcgetattr(0) == before else "[changed]", flush=True)
"""


def _run(echo: str, typed: bytes | None, *, interrupt: bool = False) -> tuple[int, str]:
    controller, terminal = pty.openpty()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, echo],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
    )
    os.close(terminal)
    seen = b""
    deadline = time.monotonic() + 30
    try:
        while b"name? " not in seen and time.monotonic() < deadline:
            if select.select([controller], [], [], 0.5)[0]:
                seen += os.read(controller, 1024)
        if interrupt:
            time.sleep(0.3)  # well inside the wait
            os.kill(child.pid, signal.SIGINT)
        elif typed is not None:
            os.write(controller, typed)
        code = child.wait(timeout=20)
        while select.select([controller], [], [], 0.2)[0]:
            try:
                chunk = os.read(controller, 1024)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if child.poll() is None:
            child.kill()
        os.close(controller)
    return code, seen.decode("utf-8", "replace")


def test_a_typed_line_is_returned_without_its_end() -> None:
    code, seen = _run("echo", b"gpu-node-07\n")
    assert code == 0 and "[got 'gpu-node-07']" in seen
    assert "gpu-node-07\r\n" in seen  # the terminal echoed it


def test_a_secret_is_not_echoed() -> None:
    code, seen = _run("secret", b"s3cret-token\n")
    assert code == 0 and "[got 's3cret-token']" in seen
    assert "s3cret-token\r\n" not in seen.replace("[got 's3cret-token']", "")


def test_ctrl_c_while_waiting_stops_the_wait() -> None:
    code, seen = _run("echo", None, interrupt=True)
    assert code == 130 and "[interrupted]" in seen


def test_end_of_input_is_eof() -> None:
    code, seen = _run("echo", b"\x04")
    assert code == 3 and "[eof]" in seen


@pytest.mark.parametrize("echo", ["echo", "secret"])
def test_the_terminal_is_left_as_it_was(echo: str) -> None:
    code, seen = _run(echo, b"x\n")
    assert code == 0 and "[restored]" in seen
