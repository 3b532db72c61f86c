"""Fixtures for the end-to-end tests: a World of real processes, and the interop peer spawner."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The js-libp2p, go-libp2p and py peer processes are driven by the bus tests' harness.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bus"))

from e2eharness import World
from meshharness import Spawner


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    value = World(tmp_path)
    try:
        yield value
    finally:
        value.close()


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[Spawner]:
    spawner = Spawner(tmp_path / "peers")
    (tmp_path / "peers").mkdir()
    try:
        yield spawner
    finally:
        spawner.close()
