"""sd_notify reaches a real notify socket, through systemd-python and through the fallback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

from cooee_agent.agent import systemd

if TYPE_CHECKING:
    from conftest import NotifyListener

BACKENDS = ["library", "socket"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_lifecycle_messages_arrive_in_order(backend: str, notify_socket: NotifyListener) -> None:
    notifier = systemd.Notifier(backend)  # type: ignore[arg-type]
    assert notifier.backend == backend
    assert notifier.ready()
    assert notifier.status("enrolled as host 7, 2 slots, last heartbeat 12:00:00")
    assert notifier.watchdog()
    assert notifier.stopping()
    assert [notify_socket.receive() for _ in range(4)] == [
        "READY=1",
        "STATUS=enrolled as host 7, 2 slots, last heartbeat 12:00:00",
        "WATCHDOG=1",
        "STOPPING=1",
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_abstract_socket_names_work(backend: str, abstract_notify_socket: NotifyListener) -> None:
    notifier = systemd.Notifier(backend)  # type: ignore[arg-type]
    assert notifier.ready("up")
    assert abstract_notify_socket.receive() == "READY=1\nSTATUS=up"


@pytest.mark.parametrize("backend", BACKENDS)
def test_reloading_carries_a_monotonic_timestamp(
    backend: str, notify_socket: NotifyListener
) -> None:
    assert systemd.Notifier(backend).reloading()  # type: ignore[arg-type]
    message = notify_socket.receive()
    assert message is not None
    first, second = message.split("\n")
    assert first == "RELOADING=1"
    assert second.startswith("MONOTONIC_USEC=")
    assert int(second.split("=")[1]) > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_status_text_cannot_forge_another_assignment(
    backend: str, notify_socket: NotifyListener
) -> None:
    systemd.Notifier(backend).status("model evil\nREADY=1")  # type: ignore[arg-type]
    assert notify_socket.receive() == "STATUS=model evil READY=1"


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_notify_socket_nothing_is_sent(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.Notifier(backend).ready() is False  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_vanished_manager_is_logged_not_raised(
    backend: str, notify_socket: NotifyListener, caplog: pytest.LogCaptureFixture
) -> None:
    notify_socket.close()
    os.unlink(notify_socket.address)  # the manager went away: sending fails with ENOENT
    assert systemd.Notifier(backend).watchdog() is False  # type: ignore[arg-type]
    assert "sd_notify 'WATCHDOG' failed" in caplog.text


def test_auto_backend_falls_back_when_systemd_python_is_absent(
    notify_socket: NotifyListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "systemd", None)  # import systemd now fails, as on macOS
    notifier = systemd.Notifier()
    assert notifier.backend == "socket"
    assert notifier.ready()
    assert notify_socket.receive() == "READY=1"
    with pytest.raises(RuntimeError, match="systemd-python is not installed"):
        systemd.Notifier("library")


def test_auto_backend_prefers_systemd_python() -> None:
    assert systemd.Notifier().backend == "library"


def test_module_functions_notify_from_a_fresh_process_without_systemd_python(
    notify_socket: NotifyListener,
) -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["systemd"] = None
        from cooee_agent.agent import systemd
        assert systemd.ready() and systemd.status("hi") and systemd.watchdog()
        assert systemd.stopping("bye")
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
    got = [notify_socket.receive() for _ in range(4)]
    assert got == ["READY=1", "STATUS=hi", "WATCHDOG=1", "STOPPING=1\nSTATUS=bye"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": str(os.getpid())}, 0.5),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval_follows_sd_watchdog_enabled(
    env: dict[str, str], expected: float | None
) -> None:
    assert systemd.watchdog_interval(env) == expected
