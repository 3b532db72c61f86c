"""Two mesh nodes with no bootstrap peers, run inside a private network namespace (mDNS test).

    python mdns_child.py scenario WORK_DIR   # prints one JSON result line on stdout
    python mdns_child.py node STATE_DIR (--mdns | --no-mdns)   # one node, JSON lines on stdout

``scenario`` refuses to run unless loopback is the only interface, so that no multicast ever
leaves a namespace made by tests/bus/test_mdns_netns.py. It starts a pair with mdns=False, then
a pair with mdns=True, and reports whether each pair connected and delivered a message.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

TOPIC = "cooee/availability/v1"
FIND_TIMEOUT = 30.0  # discovery plus dial on a loaded 2-core machine
# With mDNS on, 0.8.1 puts a found peer in the peerstore and its auto-connector dials it on its
# next poll (every 10 s while a node has no connection): a pair without mDNS waits past that.
NO_MDNS_WAIT = 12.0


def node(state_dir: Path, mdns: bool) -> None:
    from cooee_agent.bus.mesh_config import MeshConfig
    from cooee_agent.bus.mesh_transport import start_mesh

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    config = MeshConfig(state_dir=state_dir, listen=("/ip4/127.0.0.1/tcp/0",), mdns=mdns)
    out = threading.Lock()

    def emit(event: dict[str, Any]) -> None:
        with out:
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()

    with start_mesh(config) as mesh:
        subscription = mesh.subscribe(TOPIC)

        def forward() -> None:
            for message in subscription:
                emit({"event": "message", "data": message.data.decode(), "from": message.from_peer})

        threading.Thread(target=forward, daemon=True).start()
        emit({"event": "ready", "peer_id": mesh.peer_id})
        for line in sys.stdin:
            command = json.loads(line)
            if command["cmd"] == "peers":
                emit({"event": "peers", "peers": mesh.peers(), "topic": mesh.topic_peers(TOPIC)})
            elif command["cmd"] == "publish":
                mesh.publish(TOPIC, command["data"].encode())
            elif command["cmd"] == "quit":
                break


class Node:
    """A ``node`` subprocess whose JSON lines land in a queue."""

    def __init__(self, name: str, work: Path, mdns: bool) -> None:
        state = work / name
        state.mkdir(parents=True)
        self.stderr = (work / f"{name}.stderr").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "node", str(state), "--mdns" if mdns else "--no-mdns"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            bufsize=1,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.messages: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.peer_id = str(self._next("ready", 30.0)["peer_id"])

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def _next(self, kind: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if event["event"] == "message":
                self.messages.append(event["data"])
            elif event["event"] == kind:
                return event

    def send(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def peers(self) -> dict[str, Any]:
        self.send(cmd="peers")
        return self._next("peers", 10.0)

    def received(self, data: str) -> bool:
        while not self.events.empty():
            event = self.events.get_nowait()  # this thread is the queue's only reader
            if event["event"] == "message":
                self.messages.append(event["data"])
        return data in self.messages

    def stop(self) -> None:
        try:
            self.send(cmd="quit")
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(10)
        self.stderr.close()


def run_pair(work: Path, mdns: bool, wait: float) -> dict[str, Any]:
    """Start two nodes; report whether they connect and (if so) whether a publish arrives."""
    tag = "on" if mdns else "off"
    a = Node(f"a-{tag}", work, mdns)
    b = Node(f"b-{tag}", work, mdns)
    result: dict[str, Any] = {"a_id": a.peer_id, "b_id": b.peer_id, "found": False}
    result.update(delivered=False, seconds_to_find=None)
    try:
        started = time.monotonic()
        deadline = started + wait
        while time.monotonic() < deadline:
            a_view, b_view = a.peers(), b.peers()
            if b.peer_id in a_view["topic"] and a.peer_id in b_view["topic"]:
                result["found"] = True
                result["seconds_to_find"] = round(time.monotonic() - started, 2)
                break
            time.sleep(0.3)
        result["a_peers"], result["b_peers"] = a.peers()["peers"], b.peers()["peers"]
        # Publish even when they did not connect: a message must then not arrive.
        data = f"hello over mdns={mdns}"
        deadline = time.monotonic() + (20.0 if result["found"] else 3.0)
        while time.monotonic() < deadline and not result["delivered"]:
            a.send(cmd="publish", data=data)
            step = time.monotonic() + 1.0
            while time.monotonic() < step and not result["delivered"]:
                result["delivered"] = b.received(data)
                time.sleep(0.05)
    finally:
        a.stop()
        b.stop()
    for name in (f"a-{tag}", f"b-{tag}"):
        result[f"{name}_stderr"] = (work / f"{name}.stderr").read_text()[-2000:]
    return result


def scenario(work: Path) -> None:
    interfaces = sorted(name for _, name in socket.if_nameindex())
    if interfaces != ["lo"]:
        # Multicast must never reach a real network: only a fresh namespace looks like this.
        print(json.dumps({"error": f"not in a private network namespace: {interfaces}"}))
        sys.exit(2)
    result = {
        "interfaces": interfaces,
        "mdns_off": run_pair(work, mdns=False, wait=NO_MDNS_WAIT),
        "mdns_on": run_pair(work, mdns=True, wait=FIND_TIMEOUT),
    }
    print(json.dumps(result), flush=True)


def main() -> None:
    if sys.argv[1] == "scenario":
        scenario(Path(sys.argv[2]))
    elif sys.argv[1] == "node":
        node(Path(sys.argv[2]), sys.argv[3] == "--mdns")
    else:
        sys.exit(f"unknown mode {sys.argv[1]!r}")


if __name__ == "__main__":
    main()
