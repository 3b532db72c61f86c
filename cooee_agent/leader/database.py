"""The Leader's SQLite files (registry, calls): WAL, one connection each, explicit transactions."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cooee_agent.files import FileRefused, make_directory
from cooee_agent.leader.database_faults import DatabaseFault, database_faults, describe, file_of


def open_database(path: Path, schema: str, *, busy_timeout_s: float) -> sqlite3.Connection:
    """Open (creating) ``path`` in WAL mode and apply ``schema`` (idempotent statements).

    Any fault (corrupt, a directory, read-only, locked, disk full) is a DatabaseFault naming
    ``path`` and the repair.
    """
    try:
        make_directory(path.parent)
    except FileRefused as error:
        raise DatabaseFault(f"cannot create the directory of {path}: {error}") from None
    with database_faults(path):
        # Private whatever existed before: the registry holds join-token hashes and the hosts'
        # keys, and a directory made earlier keeps its mode.
        os.chmod(path.parent, 0o700)
        _private_file(path)
        # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE. A connection
        # is not shared between threads at once, but may be handed to the thread that serves.
        db = sqlite3.connect(
            path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            # SQLite gives the -wal and -shm files the database file's mode; ones left by an
            # older release keep theirs until tightened here.
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.chmod(f"{path}{suffix}", 0o600)
            # In WAL mode NORMAL is durable against a crash of this process (not of the machine).
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            # Deleted content is overwritten, not left in free pages: the files hold agent keys
            # and join-token hashes, and older releases kept tokens in clear.
            db.execute("PRAGMA secure_delete=ON")
            with transaction(db):
                for statement in schema.split(";"):
                    if statement.strip():
                        db.execute(statement)
        except BaseException:
            db.close()
            raise
    return db


def _private_file(path: Path) -> None:
    """Make ``path`` a file of mode 0600: created so, or tightened by name.

    Never by opening and closing a descriptor of an existing file: closing any descriptor of a
    file drops every POSIX lock this process holds on it, SQLite's included, and another
    connection of this process may have the database open (the Leader opens the submissions
    file twice); a reader whose locks vanish keeps reading a stale snapshot.
    """
    try:
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
    except FileExistsError:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            raise DatabaseFault(
                f"{path} is a symbolic link; a database must be a file of its own"
            ) from None
        if stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) != 0o600:
            os.chmod(path, 0o600)
        return
    os.close(fd)  # a new file: no connection of this process has it open yet


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE: writers queue up front, so concurrent ingests never deadlock midway."""
    with _faults_of(db):
        db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except sqlite3.Error as error:
        _rollback(db)
        # A write that failed in the file (disk full, read-only, corrupt page) names the file.
        raise DatabaseFault(describe(file_of(db), error)) from error
    except BaseException:
        _rollback(db)
        raise
    with _faults_of(db):
        db.execute("COMMIT")


@contextmanager
def _faults_of(db: sqlite3.Connection) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as error:
        raise DatabaseFault(describe(file_of(db), error)) from error


def _rollback(db: sqlite3.Connection) -> None:
    # SQLite may already have rolled back (a full disk does); the error being raised is the news.
    with contextlib.suppress(sqlite3.Error):
        db.execute("ROLLBACK")


def add_missing_columns(db: sqlite3.Connection, columns: Iterable[tuple[str, str, str]]) -> None:
    """Bring a file made by an older release up to the schema: ``columns`` are (table, column,
    definition) triples, each added when its table lacks it (``CREATE TABLE IF NOT EXISTS``
    leaves an existing table as it was)."""
    with transaction(db):
        for table, column, definition in columns:
            present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
