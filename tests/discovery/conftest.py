"""Fixtures for discovery tests."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
from discovery_support import OLLAMA_FIXTURES, OllamaServer, start_ollama_server


@pytest.fixture
def ollama_server() -> Iterator[Callable[[str], OllamaServer]]:
    """Start a server for a fixture version directory (e.g. "v0.12.6"); stopped afterwards."""
    started: list[OllamaServer] = []

    def start(version: str) -> OllamaServer:
        server = start_ollama_server(OLLAMA_FIXTURES / "api" / version)
        started.append(server)
        return server

    yield start
    for server in started:
        with contextlib.suppress(OSError):
            server.stop()
