"""Helpers for tests that run py-libp2p mesh nodes in this process, on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cooee_agent.bus.mesh_transport import MeshTransport
from cooee_agent.bus.transport import Message


def until(condition: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def on_node(node: MeshTransport, fn: Callable[..., Any], *args: Any, sync: bool = False) -> Any:
    """Run ``fn(pubsub, *args)`` on the node's trio thread (a coroutine function unless sync)."""
    import trio

    runner = trio.from_thread.run_sync if sync else trio.from_thread.run
    return runner(fn, node._node._pubsub, *args, trio_token=node._token)


def received(subscription: Any, count: int, timeout: float = 30.0) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        message = subscription.get(timeout=0.1)
        if message is not None:
            got.append(message)
    return got
