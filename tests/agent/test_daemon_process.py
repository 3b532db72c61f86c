"""``cooee-agent run`` as a real process under a real notify socket, with ``leader serve`` as its
Leader on 127.0.0.1: READY=1, WATCHDOG=1 pings, enrolment, heartbeats, and on SIGTERM
STOPPING=1, a ``leaving`` at the Leader and exit 0; a killed agent goes offline."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from process_support import ENTRY, cli, free_port, until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

T = TypeVar("T")


class Notify:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []

    def collect(self, timeout: float = 0.2) -> list[str]:
        self.sock.settimeout(timeout)
        while True:
            try:
                self.messages.append(self.sock.recv(65536).decode())
            except TimeoutError:
                return self.messages

    def wait_for(self, text: str, timeout: float, count: int = 1) -> None:
        until(lambda: sum(text in m.splitlines() for m in self.collect()) >= count, text, timeout)


class World:
    """A Leader (``leader serve``) and the processes a test starts, all cleaned up."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[str]] = []
        self.leader_dir = tmp / "leader"
        keygen = cli("leader", "keygen", "--state-dir", str(self.leader_dir), "--json")
        assert keygen.returncode == 0, keygen.stderr
        self.bundle = json.loads(keygen.stdout)["bundle"]
        self.leader_log = (tmp / "leader.stderr").open("w")
        argv = [sys.executable, "-c", ENTRY, "leader", "serve", "--state-dir",
                str(self.leader_dir), "--listen", f"/ip4/127.0.0.1/tcp/{free_port()}",
                "--offline-after", "3"]  # fmt: skip
        self.leader = self._spawn(argv, {}, self.leader_log)
        addrs = self.leader_dir / "leader.addrs"
        self.leader_addr = until(
            lambda: addrs.exists() and addrs.read_text().split(), "leader.addrs", 60
        )[0]

    def _spawn(self, argv: list[str], env: dict[str, str], log: Any) -> subprocess.Popen[str]:
        full = {**os.environ, **env}
        for name in ("JOURNAL_STREAM", "WATCHDOG_USEC", "WATCHDOG_PID", "NOTIFY_SOCKET"):
            if name not in env:
                full.pop(name, None)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True, env=full)
        self.procs.append(proc)
        return proc

    def agent_config(self, name: str) -> tuple[Path, Path]:
        state = self.tmp / name
        config = self.tmp / f"{name}.toml"
        config.write_text(
            f'state_dir = "{state}"\n'
            'log_level = "debug"\n'
            f'[leader]\nkeys = ["{self.bundle}"]\n'
            f'[mesh]\nlisten = "/ip4/127.0.0.1/tcp/0"\nbootstrap = ["{self.leader_addr}"]\n'
            "[heartbeat]\ninterval = 1\njitter = 0\n"
            f'[ollama]\nhost = "http://127.0.0.1:{free_port()}"\n'
        )
        return config, state

    def start_agent(self, config: Path, notify: Notify | None, watchdog_usec: int = 0):  # type: ignore[no-untyped-def]
        env = {"OLLAMA_MODELS": str(self.tmp / "no-models")}
        if notify is not None:
            env["NOTIFY_SOCKET"] = str(notify.path)
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        # WATCHDOG_PID must name the agent itself: the shell's pid survives the exec.
        command = f'WATCHDOG_PID=$$ exec "{sys.executable}" -c "{ENTRY}" run --config "{config}"'
        log = (self.tmp / f"{config.stem}.stderr").open("a")
        return self._spawn(["/bin/sh", "-c", command], env, log)

    def hosts(self) -> list[dict[str, Any]]:
        listed = cli("leader", "list", "--json", "--state-dir", str(self.leader_dir))
        assert listed.returncode == 0, listed.stderr
        return list(json.loads(listed.stdout))

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        self.leader_log.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    value = World(tmp_path)
    yield value
    value.close()


def agent_status(state: Path) -> dict[str, Any]:
    result = cli("status", "--json", "--state-dir", str(state))
    return dict(json.loads(result.stdout))


def test_run_under_systemd_notify_enrols_pings_and_stops_cleanly(world: World) -> None:
    notify = Notify(world.tmp / "notify")
    config, state = world.agent_config("agent")
    agent = world.start_agent(config, notify, watchdog_usec=2_000_000)
    notify.wait_for("READY=1", 60)
    notify.wait_for("WATCHDOG=1", 10, count=3)

    status = until(
        lambda: (s := agent_status(state)).get("enrolment") == "enrolled" and s, "enrolled", 60
    )
    assert status["agent"] == "running" and status["peers"] >= 1
    assert status["mesh_drops"] == {}  # counted by the mesh node; nothing dropped here
    assert status["tokens"] and status["host_id"] is not None
    until(lambda: agent_status(state).get("last_heartbeat"), "a heartbeat", 30)
    host = until(
        lambda: [h for h in world.hosts() if h["state"] == "online"], "online at the Leader", 30
    )[0]
    assert host["host_id"] == status["host_id"]
    assert any("STATUS=enrolled as host" in m for m in notify.collect())

    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=20) == 0
    assert any("STOPPING=1" in m.splitlines() for m in notify.collect())
    until(lambda: [h for h in world.hosts() if h["state"] == "left"], "left at the Leader", 30)
    after = agent_status(state)
    assert after["agent"] == "stopped"
    assert cli("status", "--state-dir", str(state)).returncode == 1

    # A restart reuses the stored assignment: same host, no second enrolment.
    again = world.start_agent(config, None)
    until(lambda: [h for h in world.hosts() if h["state"] == "online"], "online again", 60)
    assert [h["host_id"] for h in world.hosts()] == [status["host_id"]]
    again.send_signal(signal.SIGTERM)
    assert again.wait(timeout=20) == 0


def test_a_killed_agent_goes_offline_at_the_leader(world: World) -> None:
    config, state = world.agent_config("agent")
    agent = world.start_agent(config, None)
    until(lambda: [h for h in world.hosts() if h["state"] == "online"], "online", 90)
    agent.kill()
    agent.wait(timeout=10)
    until(lambda: [h for h in world.hosts() if h["state"] == "offline"], "offline", 30)
    assert agent_status(state)["agent"] == "stopped"
