"""The Leader's SQLite files (registry, calls): WAL, one connection each, explicit transactions."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def open_database(path: Path, schema: str, *, busy_timeout_s: float) -> sqlite3.Connection:
    """Open (creating) ``path`` in WAL mode and apply ``schema`` (idempotent statements)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Private whatever existed before: the registry holds join-token hashes and the hosts' keys,
    # and mkdir's mode applies only to a directory it creates.
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE. A connection is
    # not shared between threads at once, but may be handed to the thread that serves.
    db = sqlite3.connect(
        path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
    )
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    # SQLite gives the -wal and -shm files the database file's mode; ones left by an older
    # release keep theirs until tightened here.
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{path}{suffix}", 0o600)
    # In WAL mode NORMAL is durable against a crash of this process (not of the machine).
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    # Deleted content is overwritten, not left in free pages: the files hold agent keys and
    # join-token hashes, and older releases kept tokens in clear.
    db.execute("PRAGMA secure_delete=ON")
    with transaction(db):
        for statement in schema.split(";"):
            if statement.strip():
                db.execute(statement)
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE: writers queue up front, so concurrent ingests never deadlock midway."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def add_missing_columns(db: sqlite3.Connection, columns: Iterable[tuple[str, str, str]]) -> None:
    """Bring a file made by an older release up to the schema: ``columns`` are (table, column,
    definition) triples, each added when its table lacks it (``CREATE TABLE IF NOT EXISTS``
    leaves an existing table as it was)."""
    with transaction(db):
        for table, column, definition in columns:
            present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
