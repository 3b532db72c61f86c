"""Tell systemd how the daemon is doing (sd_notify), with or without systemd-python installed."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Literal

log = logging.getLogger(__name__)

Backend = Literal["auto", "library", "socket"]


def _library() -> Callable[[str], bool] | None:
    try:
        from systemd import daemon  # type: ignore[attr-defined,unused-ignore]
    except ImportError:  # macOS, or a Linux host built without libsystemd
        return None
    return daemon.notify  # type: ignore[no-any-return]


def _socket_notify(message: str) -> bool:
    """sd_notify(3) by hand: one datagram to $NOTIFY_SOCKET; False when there is none."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        target = "\0" + address[1:]  # Linux abstract namespace
    elif address.startswith("/"):
        target = address
    else:
        # Unset (not under systemd) or a form we do not speak (vsock:); like the library, no-op.
        return False
    flags = getattr(socket, "SOCK_CLOEXEC", 0)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | flags) as sock:
        sock.sendto(message.encode("utf-8"), target)
    return True


class Notifier:
    """Sends sd_notify messages; ``backend`` forces systemd-python or the plain socket.

    Every method returns True when a message went out and False when there is no manager to
    tell (or sending failed): a failed notification is logged, never raised, because systemd
    being away must not stop the agent.
    """

    def __init__(self, backend: Backend = "auto") -> None:
        send = None if backend == "socket" else _library()
        if send is None and backend == "library":
            raise RuntimeError("systemd-python is not installed")
        self._send: Callable[[str], bool] = send or _socket_notify
        self.backend: Literal["library", "socket"] = "library" if send else "socket"

    def notify(self, *assignments: str) -> bool:
        message = "\n".join(assignments)
        try:
            return bool(self._send(message))
        except OSError as error:
            log.warning("sd_notify %r failed: %s", message.split("=", 1)[0], error)
            return False

    def ready(self, status: str | None = None) -> bool:
        extra = (f"STATUS={_one_line(status)}",) if status is not None else ()
        return self.notify("READY=1", *extra)

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        extra = (f"STATUS={_one_line(status)}",) if status is not None else ()
        return self.notify("STOPPING=1", *extra)

    def reloading(self) -> bool:
        """Before re-reading the config on SIGHUP; send ``ready()`` again when done."""
        # systemd >= 253 wants the timestamp to tell this reload from an earlier one.
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")


def _one_line(text: str) -> str:
    # A newline would start a new assignment: "x\nREADY=1" in a model name must not forge one.
    return " ".join(text.split())


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds systemd allows between WATCHDOG=1 pings, or None when no watchdog is armed.

    Mirrors sd_watchdog_enabled(3): WATCHDOG_USEC must be a positive integer, and WATCHDOG_PID,
    when set, must name this process (otherwise the watchdog belongs to a parent).
    """
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid is not None and pid != str(os.getpid()):
        return None
    return int(usec) / 1_000_000


_default: Notifier | None = None


def _notifier() -> Notifier:
    global _default
    if _default is None:
        _default = Notifier()
    return _default


def notify(*assignments: str) -> bool:
    return _notifier().notify(*assignments)


def ready(status: str | None = None) -> bool:
    return _notifier().ready(status)


def status(text: str) -> bool:
    return _notifier().status(text)


def watchdog() -> bool:
    return _notifier().watchdog()


def stopping(status: str | None = None) -> bool:
    return _notifier().stopping(status)


def reloading() -> bool:
    return _notifier().reloading()
