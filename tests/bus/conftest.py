"""Fixtures for the bus tests: a spawner of peer processes, and mesh nodes in this process; both
stopped after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from meshharness import Spawner

from cooee_agent.bus.mesh_config import MeshConfig
from cooee_agent.bus.mesh_transport import MeshTransport, start_mesh

LOOPBACK = ("/ip4/127.0.0.1/tcp/0",)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawner]:
    spawner = Spawner(tmp_path)
    try:
        yield spawner
    finally:
        spawner.close()


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Callable[..., MeshTransport]]:
    """``nodes(name, bootstrap=(), **MeshConfig options)`` starts a node on 127.0.0.1 that
    redials quickly; every node started is closed after the test."""
    started: list[MeshTransport] = []

    def start(name: str, bootstrap: tuple[str, ...] = (), **options: Any) -> MeshTransport:
        config = MeshConfig(
            state_dir=tmp_path / name,
            listen=LOOPBACK,
            bootstrap=bootstrap,
            redial_base=0.2,
            redial_cap=1.0,
            **options,
        )
        node = start_mesh(config)
        started.append(node)
        return node

    try:
        yield start
    finally:
        for node in reversed(started):
            node.close()
