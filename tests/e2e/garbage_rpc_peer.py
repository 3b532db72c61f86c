"""A hostile py-libp2p peer (test harness) that writes one frame that is not a pubsub RPC.

    python tests/e2e/garbage_rpc_peer.py --state-dir DIR --target MADDR

It dials ``--target`` like any peer (Noise, yamux), opens a gossipsub stream to it and writes a
correctly length-prefixed frame whose body is not protobuf, as a broken or hostile
implementation could. Prints {"event": "sent"} (or {"event": "error", ...}) and exits.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from cooee_agent.bus.mesh_config import MeshConfig
from cooee_agent.bus.mesh_transport import start_mesh

# 0xff starts a field with wire type 7, which protobuf does not have: ParseFromString fails.
GARBAGE = b"\xff" * 64


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--target", required=True)
    args = parser.parse_args()
    target_id = args.target.rsplit("/", 1)[1]
    mesh = start_mesh(
        MeshConfig(
            state_dir=args.state_dir,
            listen=("/ip4/127.0.0.1/tcp/0",),
            bootstrap=(args.target,),
            redial_base=0.2,
            redial_cap=1.0,
        )
    )
    deadline = time.monotonic() + 30
    while target_id not in mesh.peers():
        if time.monotonic() > deadline:
            print(json.dumps({"event": "error", "error": "never connected"}), flush=True)
            sys.exit(1)
        time.sleep(0.1)

    import trio
    from libp2p.custom_types import TProtocol
    from libp2p.peer.id import ID
    from libp2p.utils.varint import encode_varint_prefixed

    async def send() -> None:
        host = mesh._node._host
        stream = await host.new_stream(ID.from_base58(target_id), [TProtocol("/meshsub/1.1.0")])
        await stream.write(encode_varint_prefixed(GARBAGE))
        await trio.sleep(0.5)  # let the frame leave before the process does

    trio.from_thread.run(send, trio_token=mesh._token)
    print(json.dumps({"event": "sent"}), flush=True)
    mesh.close()


if __name__ == "__main__":
    main()
