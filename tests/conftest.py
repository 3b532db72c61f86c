"""Fixtures shared by the whole suite."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROTOCOL_DOC = PROJECT_ROOT / "docs" / "PROTOCOL.md"


def read_vector_block(name: str) -> list[str]:
    """Lines of the fenced block that follows ``<!-- vectors:NAME ... -->`` in docs/PROTOCOL.md."""
    text = PROTOCOL_DOC.read_text(encoding="utf-8")
    pattern = re.compile(
        r"<!-- vectors:" + re.escape(name) + r"[ \-][^\n]*\n```[a-z]*\n(.*?)\n```", re.DOTALL
    )
    match = pattern.search(text)
    if match is None:
        raise AssertionError(f"docs/PROTOCOL.md has no vector block named {name!r}")
    return [line for line in match.group(1).splitlines() if line.strip()]


@pytest.fixture
def protocol_vectors() -> Callable[[str], list[str]]:
    return read_vector_block
