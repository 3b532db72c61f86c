"""A real notify socket, bound the way systemd binds it, that tests read sd_notify messages from."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


class NotifyListener:
    """A bound AF_UNIX datagram socket; ``address`` is what goes into $NOTIFY_SOCKET."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)

    def receive(self, timeout: float = 2.0) -> str | None:
        """The next datagram, or None when none arrives within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(65536).decode("utf-8")
        except TimeoutError:
            return None

    def drain(self) -> list[str]:
        out = []
        while (message := self.receive(timeout=0.01)) is not None:
            out.append(message)
        return out

    def wait_for(self, want: Callable[[str], bool], timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.receive(left)
            if message is not None and want(message):
                return message
        raise AssertionError(f"no matching notify message within {timeout} s")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyListener]:
    """A filesystem notify socket named in $NOTIFY_SOCKET (short path: sun_path has 108 bytes)."""
    directory = Path(tempfile.mkdtemp(prefix="cooee-notify-"))
    listener = NotifyListener(str(directory / "notify"))
    monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
    yield listener
    listener.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(listener.address)
    directory.rmdir()


@pytest.fixture
def abstract_notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyListener]:
    """An abstract-namespace notify socket ("@name"), as systemd uses for some services."""
    listener = NotifyListener(f"@cooee-test-{os.getpid()}-{time.monotonic_ns()}")
    monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
    yield listener
    listener.close()
