"""Slowloris against a real ``leader serve --http`` with real agents: 200 connections that never
finish their request, held while the agents heartbeat and a new one enrols. The mesh side must
not notice: every heartbeat is applied within its interval, and the new agent is answered."""

from __future__ import annotations

import http.client
import json
import socket
import time
from pathlib import Path

import pytest
from e2eharness import World
from process_support import free_port, until

from cooee_agent.leader.readonly import ReadOnlyState

pytestmark = pytest.mark.slow

SLOW_CONNECTIONS = 200
WATCH_S = 6.0  # how long heartbeats are watched under the attack (six intervals)


def _sent(state_dir: Path) -> int:
    """The seq of the agent's last heartbeat sent, from its own status.json."""
    status = json.loads((state_dir / "status.json").read_text())
    return int((status.get("last_heartbeat") or {}).get("seq") or 0)


def _heard(world: World, hostname: str) -> int:
    with ReadOnlyState(world.leader_dir) as state:
        host = next(h for h in state.hosts_json() if h["hostname"] == hostname)
    return int(host["seq"] or 0)


def test_200_half_open_connections_delay_no_heartbeat_and_no_enrolment(world: World) -> None:
    port = free_port()
    world.start_leader(extra=["--http", f"127.0.0.1:{port}"])
    first = world.agent("steady").start()
    world.online([first.hostname])

    held = []
    try:
        for _ in range(SLOW_CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET /v1/hosts HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            held.append(sock)
        late = world.agent("late").start()  # enrols during the attack

        lags = []
        stop = time.monotonic() + WATCH_S
        while time.monotonic() < stop:
            sent = _sent(first.state_dir)
            lags.append(sent - _heard(world, first.hostname))
            time.sleep(0.25)
        # A sample may fall between a send and its ingest (lag 1); a lag of 2 would be a
        # heartbeat held up for a whole interval.
        assert max(lags) <= 1, lags
        assert sum(1 for lag in lags if lag == 0) >= len(lags) // 2, lags

        late.enrolled()
        world.online([first.hostname, late.hostname])
    finally:
        for sock in held:
            sock.close()

    def answered() -> bool:  # the attack over, the API answers again
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", "/v1/hosts")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    until(answered, "the API to answer after the attack")
