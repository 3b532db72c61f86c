"""``leader serve`` as a real process on 127.0.0.1: a test peer on the real mesh enrols and gets
its assignment; READY=1 reaches a notify socket; ``leader list`` and ``leader calls`` work while
it serves; after a restart ids are unchanged and a pending resend is still answered."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
from enrolment_factory import agent_keys, record
from process_support import ENTRY, cli, free_port, until

from cooee_agent.bus.mesh_config import MeshConfig
from cooee_agent.bus.mesh_transport import MeshTransport, start_mesh
from cooee_agent.identity import token as codec
from cooee_agent.protocol.keys import AgentKeys, LeaderKeys
from cooee_agent.protocol.kinds import (
    TOPIC_ASSIGNMENT,
    TOPIC_AVAILABILITY,
    TOPIC_ENROL,
    TOPIC_INTERVENTION,
)
from cooee_agent.protocol.records import new_nonce, now_text
from cooee_agent.protocol.sealing import open_assignment, seal_enrolment, seal_plain

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

T = TypeVar("T")


class Serve:
    """One ``leader serve`` process with a notify socket of its own."""

    launched: ClassVar[list[Serve]] = []

    def __init__(
        self,
        state_dir: Path,
        port: int,
        tmp: Path,
        offline_after: float = 3.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.notify_path = tmp / f"notify-{time.monotonic_ns()}"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.notify.settimeout(0.1)
        self.stderr = (tmp / "serve.stderr").open("a")
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify_path), **(env or {})}
        env.pop("JOURNAL_STREAM", None)
        argv = [
            sys.executable, "-c", ENTRY, "leader", "serve", "--state-dir", str(state_dir),
            "--listen", f"/ip4/127.0.0.1/tcp/{port}", "--offline-after", str(offline_after),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=env
        )
        Serve.launched.append(self)
        self.addrs = until(self._addrs, "leader.addrs", 60)

    def _addrs(self) -> list[str] | None:
        assert self.proc.poll() is None, "leader serve exited early"
        path = self.state_dir / "leader.addrs"
        return path.read_text().split() if path.exists() else None

    def notifications(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self.notify.recv(4096).decode())
            except TimeoutError:
                return out

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        stdout, _ = self.proc.communicate(timeout=30)
        self.notify.close()
        self.stderr.close()
        return self.proc.returncode, stdout


@pytest.fixture(autouse=True)
def no_serve_left_behind() -> Iterator[None]:
    yield
    for serve in Serve.launched:
        if serve.proc.poll() is None:
            serve.proc.kill()
            serve.proc.wait(timeout=30)


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[Callable[[list[str]], MeshTransport]]:
    started: list[MeshTransport] = []

    def start(bootstrap: list[str]) -> MeshTransport:
        mesh = start_mesh(
            MeshConfig(
                state_dir=tmp_path / "agent",
                listen=("/ip4/127.0.0.1/tcp/0",),
                bootstrap=tuple(bootstrap),
                redial_cap=1.0,
            )
        )
        started.append(mesh)
        return mesh

    yield start
    for mesh in started:
        mesh.close()


def resend_until_answered(
    mesh: MeshTransport, replies: Any, envelope: bytes, timeout: float = 60.0
) -> bytes:
    """What an agent's outbox does: publish the same bytes until the assignment comes back."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mesh.publish(TOPIC_ENROL, envelope)
        message = replies.get(timeout=1.0)
        if message is not None:
            return bytes(message.data)
    raise AssertionError("no assignment arrived")


def plain(keys: AgentKeys, value: dict[str, Any]) -> bytes:
    return seal_plain(value, keys.signing, keys.agent_id)


def test_an_agent_enrols_over_the_mesh_and_a_restarted_leader_answers_its_resend(
    tmp_path: Path,
    leader_dir: Path,
    leader_keys: LeaderKeys,
    peer: Callable[[list[str]], MeshTransport],
) -> None:
    port = free_port()
    # Long enough for the list, text list and calls checks below to run while the host is
    # online, however slowly the CLI starts on a loaded machine; short enough to see it expire.
    serve = Serve(leader_dir, port, tmp_path, offline_after=20.0)
    assert all(a.startswith(f"/ip4/127.0.0.1/tcp/{port}/p2p/12D3KooW") for a in serve.addrs)
    assert any(n.startswith("READY=1") for n in until(serve.notifications, "READY=1", 30))

    mesh = peer(serve.addrs)
    replies = mesh.subscribe(TOPIC_ASSIGNMENT)
    keys = agent_keys()
    envelope = seal_enrolment(record(keys, gpus=2), keys, leader_keys.bundle)
    first = resend_until_answered(mesh, replies, envelope)
    assignment = open_assignment(first, keys, leader_keys.bundle)
    assert assignment.host_id == 0
    assert [s.token for s in assignment.slots] == [codec.encode(1, 0, 0), codec.encode(1, 0, 1)]

    # A heartbeat and a call reach it; list and calls read the registry while it serves.
    hb = {
        "schema": 1, "kind": "availability", "host_id": 0, "seq": 1, "issued_at": now_text(),
        "interval_s": 1,
        "slots": [
            {"slot": s, "token": codec.encode(1, 0, s), "state": "available",
             "memory_total": None, "memory_free": None, "utilisation": None,
             "models_installed": ["llama3:8b"], "models_loaded": []}
            for s in (0, 1)
        ],
    }  # fmt: skip
    mesh.publish(TOPIC_AVAILABILITY, plain(keys, hb))
    call = {
        "schema": 1, "kind": "intervention", "nonce": new_nonce(), "issued_at": now_text(),
        "host_id": 0, "hostname": "node0001.lab", "severity": "warning", "reason": "degraded",
        "detail": "NVML timed out",
    }  # fmt: skip
    mesh.publish(TOPIC_INTERVENTION, plain(keys, call))

    def listed() -> dict[str, Any] | None:
        result = cli("leader", "list", "--json", "--state-dir", str(leader_dir))
        assert result.returncode == 0, result.stderr
        (host,) = json.loads(result.stdout)
        return host if host["state"] == "online" else None

    host = until(listed, "the host online in leader list", 30)
    assert (host["host_id"], host["status"], host["agent_state"]) == (0, "active", "available")
    text = cli("leader", "list", "--state-dir", str(leader_dir)).stdout
    assert "node0001.lab" in text and "online (available), last seen" in text
    calls = until(
        lambda: json.loads(cli("leader", "calls", "--json", "--state-dir", str(leader_dir)).stdout),
        "the call in leader calls",
        30,
    )
    assert [(c["reason"], c["host_id"]) for c in calls] == [("degraded", 0)]
    closed = cli("leader", "calls", "close", str(calls[0]["id"]), "--state-dir", str(leader_dir))
    assert closed.returncode == 0, closed.stderr
    assert json.loads(cli("leader", "calls", "--json", "--state-dir", str(leader_dir)).stdout) == []

    # No heartbeat for longer than --offline-after: offline.
    until(
        lambda: (
            json.loads(cli("leader", "list", "--json", "--state-dir", str(leader_dir)).stdout)[0][
                "state"
            ]
            == "offline"
        ),
        "the host offline",
        60,
    )

    code, stdout = serve.stop()
    assert code == 0 and stdout.split() == serve.addrs
    assert not (leader_dir / "leader.addrs").exists()

    # Restart on the same port: same peer id, the peer redials by itself, the outbox's resend
    # of the same bytes gets the same assignment, and the id is unchanged.
    again = Serve(leader_dir, port, tmp_path)
    assert again.addrs == serve.addrs
    assert resend_until_answered(mesh, replies, envelope) == first
    other = agent_keys()
    second = resend_until_answered(
        mesh, replies, seal_enrolment(record(other, host=2), other, leader_keys.bundle)
    )
    assert open_assignment(second, other, leader_keys.bundle).host_id == 1
    hosts = json.loads(cli("leader", "list", "--json", "--state-dir", str(leader_dir)).stdout)
    assert [(h["hostname"], h["host_id"]) for h in hosts] == [
        ("node0001.lab", 0),
        ("node0002.lab", 1),
    ]
    code, _ = again.stop()
    assert code == 0


def test_replayed_ingest_by_hand_still_exits_1(leader_dir: Path, leader_keys: LeaderKeys) -> None:
    keys = agent_keys()
    path = leader_dir.parent / "enrolment.json"
    path.write_bytes(seal_enrolment(record(keys), keys, leader_keys.bundle))
    assert cli("leader", "ingest", "--state-dir", str(leader_dir), str(path)).returncode == 0
    again = cli("leader", "ingest", "--state-dir", str(leader_dir), str(path))
    assert again.returncode == 1 and "replayed" in again.stderr


def test_serve_without_leader_keys_fails_with_one_line(tmp_path: Path) -> None:
    result = cli(
        "leader", "serve", "--state-dir", str(tmp_path), "--listen", "/ip4/127.0.0.1/tcp/0"
    )
    assert result.returncode == 1
    assert result.stderr.startswith("cooee-agent: error:") and "Traceback" not in result.stderr


def test_serve_pings_the_watchdog_systemd_armed(tmp_path: Path, leader_dir: Path) -> None:
    # WatchdogSec=2 as systemd passes it: pings every 0.5 s while the dispatcher loop turns.
    serve = Serve(leader_dir, free_port(), tmp_path, env={"WATCHDOG_USEC": "2000000"})
    seen: list[str] = []

    def pings() -> list[str] | None:
        seen.extend(serve.notifications())
        found = [n for n in seen if n == "WATCHDOG=1"]
        return found if len(found) >= 3 else None

    until(pings, "three WATCHDOG=1", 30)
    assert any(n.startswith("READY=1") for n in seen)
    assert seen.index("WATCHDOG=1") > min(i for i, n in enumerate(seen) if n.startswith("READY"))
    assert serve.stop()[0] == 0
