"""A process that uses the outbox and is SIGKILLed by tests/bus/test_outbox.py.

    python outbox_child.py STATE_DIR WIRE_FILE publish-and-wait   # put, publish, wait for an ack
    python outbox_child.py STATE_DIR WIRE_FILE put-forever        # put item after item

Each completed step is printed as one line on stdout, after the outbox call returned.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from cooee_agent.bus.outbox import Outbox
from cooee_agent.protocol.kinds import TOPIC_ENROL


def main() -> None:
    state_dir, wire, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    outbox = Outbox.open_in(state_dir, base_delay=0.2, max_delay=1.0)

    def publish(topic: str, data: bytes) -> None:
        with wire.open("ab") as f:
            f.write(data + b"\n")

    if mode == "publish-and-wait":
        outbox.put("host-1", TOPIC_ENROL, b"enrolment-1")
        print("written", flush=True)
        outbox.pump(publish)
        print("published", flush=True)
        time.sleep(3600)  # the assignment never comes: this process is killed here
    elif mode == "put-forever":
        n = 0
        while True:
            outbox.put(f"key-{n}", TOPIC_ENROL, b"%d" % n)
            print(n, flush=True)
            n += 1


if __name__ == "__main__":
    main()
