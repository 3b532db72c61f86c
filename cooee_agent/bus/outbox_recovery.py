"""Opening the outbox at start when its file is corrupt: set it aside, say so, start afresh.

A corrupt ``outbox.sqlite3`` used to stop ``run`` on every start, so systemd restarted it into
the same failure for ever with no way out named. The file is never deleted: it is renamed
beside itself with the time in its name, an ERROR line says where it went and what was lost,
and the agent carries on with an empty outbox (its enrolment is rebuilt and sent again; a call
for intervention that was queued in it is not, and the line says so).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

from cooee_agent.bus.outbox import OUTBOX_FILE, Outbox
from cooee_agent.errors import TransportError

logger = logging.getLogger(__name__)

# SQLite's companions of a database file in WAL mode: set aside with it, or SQLite would
# replay a stale log into the fresh file.
_COMPANIONS = ("-wal", "-shm")


def open_outbox(state_dir: Path, **options: object) -> Outbox:
    """``Outbox.open_in(state_dir)``; a file SQLite cannot read as a database is set aside."""
    try:
        return Outbox.open_in(state_dir, **options)
    except TransportError as error:
        if not is_corrupt(error):
            raise
        reason = str(error.__cause__)
    path = Path(state_dir) / OUTBOX_FILE
    aside = set_aside(path)
    logger.error(
        "outbox %s is corrupt (%s): moved it aside to %s and started an empty one; the "
        "enrolment is sent again, but calls for intervention queued in it are lost (queue them "
        "again with 'cooee-agent intervene')",
        path,
        reason,
        aside,
    )
    return Outbox.open_in(state_dir, **options)


def is_corrupt(error: TransportError) -> bool:
    """True when SQLite said the file is no database (not: locked, read-only, disk full)."""
    cause = error.__cause__
    return isinstance(cause, sqlite3.DatabaseError) and not isinstance(
        cause, sqlite3.OperationalError
    )


def set_aside(path: Path) -> Path:
    """Rename ``path`` (and its WAL companions) to ``<name>.corrupt-<UTC time>``; the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    suffix = 1
    while os.path.lexists(aside):
        suffix += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{suffix}")
    for companion in _COMPANIONS:
        extra = path.with_name(path.name + companion)
        if os.path.lexists(extra):
            os.replace(extra, aside.with_name(aside.name + companion))
    os.replace(path, aside)
    return aside
