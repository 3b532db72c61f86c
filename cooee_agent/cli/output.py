"""Rendering helpers shared by the CLI verbs: JSON for scripts, plain lines for people."""

from __future__ import annotations

import json
from typing import Any


def emit_json(value: Any) -> None:
    """Print one JSON document, keys sorted, so scripts can diff outputs."""
    print(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))
