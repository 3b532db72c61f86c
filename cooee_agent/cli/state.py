"""Process-wide CLI options (set by the root callback, read by commands and main)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CliState:
    debug: bool = False


STATE = CliState()
