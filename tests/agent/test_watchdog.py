"""Watchdog pings flow only while the main loop beats; a stalled loop falls silent."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from typing import TYPE_CHECKING

import pytest

from cooee_agent.agent import systemd
from cooee_agent.agent.watchdog import Progress, WatchdogPinger

if TYPE_CHECKING:
    from conftest import NotifyListener


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_tick_pings_only_while_the_last_beat_is_recent() -> None:
    clock = FakeClock()
    progress = Progress(clock)
    sent: list[float] = []
    pinger = WatchdogPinger(progress, 30.0, send=lambda: sent.append(clock.now) or True)
    assert (pinger.period, pinger.max_age) == (7.5, 15.0)
    assert pinger.tick()
    clock.now += 15.0
    assert pinger.tick()  # exactly at the limit still counts as healthy
    clock.now += 0.5
    assert not pinger.tick()
    clock.now += 100
    assert not pinger.tick()
    progress.beat()
    assert pinger.tick()
    assert sent == [100.0, 115.0, 215.5]


def test_stall_and_recovery_are_logged_once_each(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    progress = Progress(clock)
    pinger = WatchdogPinger(progress, 4.0, send=lambda: True)
    clock.now += 3
    for _ in range(3):
        pinger.tick()
    progress.beat()
    pinger.tick()
    assert caplog.text.count("withholding watchdog pings") == 1
    assert caplog.text.count("pings resume") == 1


def test_from_env_arms_only_when_systemd_asked() -> None:
    progress = Progress()
    assert WatchdogPinger.from_env(progress, {}) is None
    pinger = WatchdogPinger.from_env(progress, {"WATCHDOG_USEC": "30000000"})
    assert pinger is not None and pinger.timeout == 30.0


def test_a_stalled_loop_stops_the_pings_on_a_real_socket(notify_socket: NotifyListener) -> None:
    progress = Progress()
    beating = threading.Event()
    beating.set()
    done = threading.Event()

    def main_loop() -> None:
        while not done.is_set():
            if beating.is_set():
                progress.beat()
            time.sleep(0.02)

    loop = threading.Thread(target=main_loop, daemon=True)
    loop.start()
    pinger = WatchdogPinger(progress, 0.4, send=systemd.Notifier("socket").watchdog)
    with pinger:
        time.sleep(0.6)
        healthy = notify_socket.drain()
        beating.clear()  # the loop hangs from here on
        time.sleep(pinger.max_age + pinger.period + 0.05)
        notify_socket.drain()  # pings sent before the stall was noticed
        stalled = [m for m in [notify_socket.receive(timeout=0.8)] if m is not None]
        beating.set()
        recovered = notify_socket.receive(timeout=1.0)
    done.set()
    loop.join()
    assert len(healthy) >= 4 and set(healthy) == {"WATCHDOG=1"}
    assert stalled == []
    assert recovered == "WATCHDOG=1"


@pytest.mark.parametrize("backend", ["library", "socket"])
def test_a_blocked_trio_loop_goes_silent_in_a_real_process(
    backend: str, notify_socket: NotifyListener
) -> None:
    # The daemon's shape: a trio loop beats; a call that blocks the loop stops the beats.
    script = textwrap.dedent(
        f"""
        import sys, trio
        if {backend!r} == "socket":
            sys.modules["systemd"] = None
        from cooee_agent.agent.watchdog import Progress, WatchdogPinger

        async def main():
            progress = Progress()
            pinger = WatchdogPinger.from_env(progress)
            assert pinger is not None
            with pinger:
                async with trio.open_nursery() as nursery:
                    async def beat():
                        while True:
                            progress.beat()
                            await trio.sleep(0.02)
                    nursery.start_soon(beat)
                    await trio.sleep(0.6)
                    print("hang", flush=True)
                    sys.stdin.readline()  # blocks the whole trio loop: no more beats
                    await trio.sleep(0.5)
                    nursery.cancel_scope.cancel()

        trio.run(main)
        """
    )
    env = dict(os.environ, WATCHDOG_USEC="400000")
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdin is not None and child.stdout is not None
        assert child.stdout.readline() == "hang\n"
        before = notify_socket.drain()
        time.sleep(0.35)  # max_age (0.2 s) + one period (0.1 s): the pinger notices
        notify_socket.drain()
        silent = notify_socket.receive(timeout=0.8)
        child.stdin.write("release\n")
        child.stdin.flush()
        resumed = notify_socket.receive(timeout=2.0)
    finally:
        child.stdin.close()  # type: ignore[union-attr]
        assert child.wait(timeout=30) == 0
    assert len(before) >= 3 and set(before) == {"WATCHDOG=1"}
    assert silent is None
    assert resumed == "WATCHDOG=1"
