"""The daemon's small state files: assignment, pending enrolment, heartbeat sequence, status."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from cooee_agent.atomic import replace_file
from cooee_agent.files import make_directory

log = logging.getLogger(__name__)

ASSIGNMENT_FILE = "assignment.json"
PENDING_FILE = "pending-enrolment.json"
SEQUENCE_FILE = "sequence"
STATUS_FILE = "status.json"
STATUS_SCHEMA = "cooee-agent/status"


def write_json(path: Path, value: Any, *, durable: bool = True) -> None:
    """Replace ``path`` atomically with ``value`` as JSON, mode 0600: readers see old or new;
    ``durable`` syncs it to disk first."""
    data = (json.dumps(value, sort_keys=True, indent=1) + "\n").encode("utf-8")
    write_bytes(path, data, durable=durable)


def write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    make_directory(path.parent)
    replace_file(path, data, mode=0o600, durable=durable)


def read_json(path: Path) -> Any | None:
    """The JSON in ``path``; None when it is absent or unreadable (a broken file is logged)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        log.warning("ignoring unreadable %s: %s", path, error)
        return None


class Sequence:
    """The availability/leaving sequence number, persisted so it keeps rising across restarts.

    Written before each use, so a crash can skip numbers but never repeat one.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._value = 0
        with contextlib.suppress(FileNotFoundError, ValueError, OSError):
            self._value = int(path.read_text(encoding="ascii").strip())

    @property
    def value(self) -> int:
        return self._value

    def next(self) -> int:
        self._value += 1
        write_bytes(self.path, f"{self._value}\n".encode("ascii"))
        return self._value
