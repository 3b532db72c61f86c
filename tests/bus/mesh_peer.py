"""A py-libp2p COOEE peer as a separate process, driven by JSON lines (test harness).

    python tests/bus/mesh_peer.py --state-dir DIR [--port N] [--bootstrap MADDR]...
                                  [--subscribe TOPIC]... [--validator json]

stdout: {"event": "ready", "peer_id", "addrs"}, {"event": "message", "topic", "from",
"data_b64"}, {"event": "peers", ...}, {"event": "error", ...}.
stdin: {"cmd": "publish" | "raw_publish" | "flood" | "peers" | "quit", ...}; see handle().
"raw_publish" and "flood" skip this node's outbound checks, as a hostile peer would.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path

from cooee_agent.bus.mesh_config import MeshConfig
from cooee_agent.bus.mesh_transport import MeshTransport, start_mesh
from cooee_agent.bus.transport import Subscription

_out = threading.Lock()


def emit(event: dict[str, object]) -> None:
    with _out:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


def json_validator(topic: str, data: bytes, from_peer: str) -> bool:
    return isinstance(json.loads(data), dict)  # raises on garbage: the transport must survive it


def forward(subscription: Subscription) -> None:
    for message in subscription:
        emit(
            {
                "event": "message",
                "topic": message.topic,
                "from": message.from_peer,
                "data_b64": base64.b64encode(message.data).decode(),
            }
        )


def raw_publish(mesh: MeshTransport, topic: str, data: bytes) -> None:
    import trio

    node = mesh._node
    trio.from_thread.run(node._pubsub.publish, topic, data, trio_token=mesh._token)


def flood(mesh: MeshTransport, topic: str, seconds: float, size: int) -> None:
    deadline = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < deadline:
        raw_publish(mesh, topic, os.urandom(size))
        sent += 1
    emit({"event": "flooded", "sent": sent})


def handle(mesh: MeshTransport, command: dict[str, object]) -> bool:
    cmd = command["cmd"]
    topic = str(command.get("topic", ""))
    data = base64.b64decode(str(command.get("data_b64", "")))
    if cmd == "publish":
        mesh.publish(topic, data)
        emit({"event": "published"})
    elif cmd == "raw_publish":
        raw_publish(mesh, topic, data)
        emit({"event": "published"})
    elif cmd == "flood":
        threading.Thread(
            target=flood,
            args=(mesh, topic, float(command["seconds"]), int(command["size"])),  # type: ignore[arg-type]
            daemon=True,
        ).start()
    elif cmd == "peers":
        emit(
            {
                "event": "peers",
                "peers": mesh.peers(),
                "topic_peers": {t: mesh.topic_peers(t) for t in mesh._node.config.topics},
                "protocols": mesh.peer_protocols(),
            }
        )
    elif cmd == "quit":
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--bootstrap", action="append", default=[])
    parser.add_argument("--subscribe", action="append", default=[])
    parser.add_argument("--validator", choices=["none", "json"], default="none")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    config = MeshConfig(
        state_dir=args.state_dir,
        listen=(f"/ip4/127.0.0.1/tcp/{args.port}",),
        bootstrap=tuple(args.bootstrap),
        redial_base=0.2,
        redial_cap=2.0,
    )
    mesh = start_mesh(config, json_validator if args.validator == "json" else None)
    for topic in args.subscribe:
        threading.Thread(target=forward, args=(mesh.subscribe(topic),), daemon=True).start()
    emit({"event": "ready", "peer_id": mesh.peer_id, "addrs": mesh.addrs()})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            if not handle(mesh, json.loads(line)):
                break
        except Exception as error:
            emit({"event": "error", "error": f"{type(error).__name__}: {error}"})
    mesh.close()


if __name__ == "__main__":
    main()
