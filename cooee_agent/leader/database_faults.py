"""What went wrong with one of the Leader's SQLite files, in one line naming the file and the fix.

SQLite says "file is not a database" or "unable to open database file" without naming the file,
and the Leader's verbs used to end in its traceback. Every fault the operator can meet (a corrupt
or foreign file, a directory in its place, a read-only file or directory, another process holding
the write lock past the busy timeout, a full disk) becomes a ``DatabaseFault``: exit 1, the file,
what is wrong, and the command or step that repairs it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cooee_agent.errors import CooeeError


class DatabaseFault(CooeeError):
    """A Leader database could not be opened, read or written; the message says how to repair."""


@contextmanager
def database_faults(path: Path | None) -> Iterator[None]:
    """Turn a SQLite (or file) error inside the block into a DatabaseFault about ``path``."""
    try:
        yield
    except DatabaseFault:
        raise
    except (sqlite3.Error, OSError) as error:  # OSError: opening the file to fix its mode
        raise DatabaseFault(describe(path, error)) from error


def file_of(db: sqlite3.Connection) -> Path | None:
    """The file behind ``db`` (None for an in-memory database or a connection gone bad)."""
    try:
        row = db.execute("PRAGMA database_list").fetchone()
    except sqlite3.Error:
        return None
    return Path(row[2]) if row is not None and row[2] else None


def describe(path: Path | None, error: BaseException) -> str:
    """One line: the file, the fault, the repair."""
    name = str(path) if path is not None else "the Leader's database"
    text = str(error)
    lowered = text.lower()
    if path is not None and path.is_dir():
        return f"{name} is a directory, not a database: move it aside ('mv {name} {name}.bad')"
    if "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        return (
            f"{name} is not a readable SQLite database ({text}); stop the Leader, move the file "
            f"aside ('mv {name} {name}.corrupt') and restore it from a backup"
        )
    if "readonly" in lowered or "read-only" in lowered:
        return (
            f"{name} cannot be written ({text}): give the Leader's user write access to the file "
            "and its directory"
        )
    if "locked" in lowered or "busy" in lowered:
        return (
            f"{name} is locked by another process ({text}): stop the other Leader process "
            "(another 'leader serve' or 'leader ingest') or wait for it, then retry"
        )
    if "disk is full" in lowered or "disk i/o" in lowered:
        return f"{name} cannot be written ({text}): free space on its file system, then retry"
    if "unable to open" in lowered:
        reason = _why_unopenable(path)
        return f"cannot open {name}{reason}: check that its directory exists and is writable"
    return f"{name}: {text}"


def _why_unopenable(path: Path | None) -> str:
    if path is None:
        return ""
    directory = path.parent
    if not directory.is_dir():
        return f" ({directory} is not a directory)"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f" ({directory} is not writable by this user)"
    return ""
