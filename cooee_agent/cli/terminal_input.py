"""Reading a line from the operator's terminal so that Ctrl-C always stops the wait.

``input()`` blocks in read(2): a SIGINT that lands after the prompt is written but before the
read begins is noted by Python and acted on only when the read returns, so on a busy machine
an operator's Ctrl-C can be lost until they press Enter. Waiting in short select(2) slices
instead gives the interpreter a moment between slices to raise KeyboardInterrupt.
"""

from __future__ import annotations

import contextlib
import select
import sys
import termios
from collections.abc import Iterator
from typing import TextIO

SLICE_S = 0.1  # how long a pending Ctrl-C can wait at most


def read_line(prompt: str, *, echo: bool = True, stdin: TextIO | None = None) -> str:
    """Show ``prompt`` and return the line typed, without its end; EOFError at end of input,
    KeyboardInterrupt on Ctrl-C. ``echo=False`` hides what is typed (secrets)."""
    source = stdin if stdin is not None else sys.stdin
    # Echo goes off before the prompt shows, so nothing typed after it is ever echoed.
    with _no_echo(source) if not echo else contextlib.nullcontext():
        sys.stdout.write(prompt)
        sys.stdout.flush()
        line = _wait_and_read(source)
    if not echo:
        sys.stdout.write("\n")
        sys.stdout.flush()
    if not line:
        raise EOFError
    return line.rstrip("\n")


def _wait_and_read(source: TextIO) -> str:
    try:
        descriptor = source.fileno()
    except (AttributeError, OSError, ValueError):
        return source.readline()  # not a real file (a test's stream): nothing to wait on
    while not select.select([descriptor], [], [], SLICE_S)[0]:
        pass  # each slice ends in Python code, where a pending KeyboardInterrupt is raised
    return source.readline()


@contextlib.contextmanager
def _no_echo(source: TextIO) -> Iterator[None]:
    try:
        descriptor = source.fileno()
        before = termios.tcgetattr(descriptor)
    except (AttributeError, OSError, ValueError, termios.error):
        yield  # not a terminal: nothing to hide
        return
    hidden = list(before)
    hidden[3] &= ~termios.ECHO
    # TCSANOW, not TCSAFLUSH: what the operator typed ahead is kept, not thrown away.
    termios.tcsetattr(descriptor, termios.TCSANOW, hidden)
    try:
        yield
    finally:
        termios.tcsetattr(descriptor, termios.TCSANOW, before)
