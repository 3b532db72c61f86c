"""Harness for mesh tests: peers as real processes on 127.0.0.1 that speak JSON lines."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PY_PEER = HERE / "mesh_peer.py"
JS_DIR = REPO / "tests" / "interop" / "js"
GO_PEER = REPO / "tests" / "interop" / "go" / "peer"

# Mesh formation on a loaded 2-core CI machine can take several heartbeats; waits poll.
MESH_TIMEOUT = 45.0

Event = dict[str, object]


class PeerProcess:
    """A peer process whose stdout JSON lines are collected as events."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, cwd: Path = REPO) -> None:
        self.name = name
        self.stderr_path = log_dir / f"{name}.stderr"
        self._stderr = self.stderr_path.open("w")
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )
        self.events: list[Event] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.ready = self.wait_for(lambda e: e["event"] == "ready", MESH_TIMEOUT, "ready")

    @property
    def peer_id(self) -> str:
        return str(self.ready["peer_id"])

    @property
    def addr(self) -> str:
        addrs = [str(a) for a in self.ready["addrs"]]  # type: ignore[attr-defined]
        return next(a for a in addrs if a.startswith("/ip4/127.0.0.1/"))

    @property
    def port(self) -> int:
        return int(self.addr.split("/")[4])

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()

    def wait_for(
        self, predicate: Callable[[Event], bool], timeout: float, what: str, start: int = 0
    ) -> Event:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events[start:]:
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    break
                self._cond.wait(min(remaining, 0.2))
        pytest.fail(f"{self.name}: no {what} within {timeout:.0f}s; stderr:\n{self.stderr_tail()}")

    def messages(self, topic: str | None = None) -> list[Event]:
        with self._cond:
            return [
                e
                for e in self.events
                if e["event"] == "message" and (topic is None or e["topic"] == topic)
            ]

    def received(self, data: bytes) -> bool:
        encoded = base64.b64encode(data).decode()
        return any(e["data_b64"] == encoded for e in self.messages())

    def send(self, **command: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def publish(self, topic: str, data: bytes, raw: bool = False) -> None:
        cmd = "raw_publish" if raw else "publish"
        self.send(cmd=cmd, topic=topic, data_b64=base64.b64encode(data).decode())

    def peers(self) -> Event:
        start = len(self.events)
        self.send(cmd="peers")
        return self.wait_for(lambda e: e["event"] == "peers", 10.0, "peers reply", start)

    def wait_topic_peers(
        self, topic: str, peer_ids: list[str], timeout: float = MESH_TIMEOUT
    ) -> None:
        """Poll until this (py) peer sees every one of ``peer_ids`` joined to ``topic``."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while time.monotonic() < deadline:
            seen = list(self.peers()["topic_peers"][topic])  # type: ignore[index]
            if all(p in seen for p in peer_ids):
                return
            time.sleep(0.2)
        pytest.fail(f"{self.name}: {peer_ids} never joined {topic} (saw {seen})")

    def stderr_tail(self, lines: int = 30) -> str:
        self._stderr.flush()
        try:
            return "\n".join(self.stderr_path.read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        self._stderr.close()


def publish_until_received(
    publisher: PeerProcess,
    receivers: list[PeerProcess],
    topic: str,
    data: bytes,
    timeout: float = MESH_TIMEOUT,
    interval: float = 1.0,
) -> None:
    """Publish, and again every ``interval`` until every receiver has it (fire-and-forget)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        publisher.publish(topic, data)
        step = time.monotonic() + interval
        while time.monotonic() < step:
            if all(r.received(data) for r in receivers):
                return
            time.sleep(0.05)
    missing = [r.name for r in receivers if not r.received(data)]
    pytest.fail(f"{missing} never received {data[:40]!r} from {publisher.name}")


def need_interop(path: Path, what: str) -> None:
    """Interop peers are built by scripts/build-interop; CI must have them, a laptop may not."""
    if path.exists():
        return
    message = f"{what} is not built ({path}); run scripts/build-interop"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


class Spawner:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[PeerProcess] = []

    def _start(self, name: str, argv: list[str], cwd: Path = REPO) -> PeerProcess:
        proc = PeerProcess(name, argv, self.tmp_path, cwd)
        self.procs.append(proc)
        return proc

    def py(
        self,
        name: str,
        *,
        port: int = 0,
        bootstrap: tuple[str, ...] = (),
        subscribe: tuple[str, ...] = (),
        validator: str = "none",
        state: str | None = None,
    ) -> PeerProcess:
        """A py-libp2p peer; ``state`` names its state directory (default: ``name``)."""
        state_dir = self.tmp_path / (state or name)
        argv = [sys.executable, str(PY_PEER), "--state-dir", str(state_dir)]
        argv += ["--port", str(port), "--validator", validator]
        for addr in bootstrap:
            argv += ["--bootstrap", addr]
        for topic in subscribe:
            argv += ["--subscribe", topic]
        return self._start(name, argv)

    def js(self, name: str, mode: str, bootstrap: tuple[str, ...] = ()) -> PeerProcess:
        need_interop(JS_DIR / "node_modules", "the js-libp2p peer")
        node = shutil.which("node") or "node"
        argv = [node, "--import", "./polyfill.mjs", "peer.mjs", "--mode", mode]
        for addr in bootstrap:
            argv += ["--bootstrap", addr]
        return self._start(name, argv, cwd=JS_DIR)

    def go(
        self,
        name: str,
        mode: str,
        bootstrap: tuple[str, ...] = (),
        age_identity: Path | None = None,
        peer_key: Path | None = None,
        extra: tuple[str, ...] = (),
    ) -> PeerProcess:
        need_interop(GO_PEER, "the go-libp2p peer")
        argv = [str(GO_PEER), "-mode", mode, *extra]
        if peer_key is not None:
            argv += ["-peer-key", str(peer_key)]
        for addr in bootstrap:
            argv += ["-bootstrap", addr]
        if age_identity is not None:
            argv += ["-age-identity", str(age_identity)]
        return self._start(name, argv)

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
