"""The durable outbox: what must reach the Leader is on disk before it is published.

Publishing on the mesh is fire-and-forget, so the application confirms delivery::

    outbox = Outbox.open_in(state_dir)                 # state_dir/outbox.sqlite3, 0600
    outbox.put(key, TOPIC_ENROL, envelope_bytes)       # durable (fsync) before it returns
    outbox.pump(transport.publish)                     # publishes what is due; call it often
    ...
    outbox.ack(key)                                    # when the answer (the assignment) arrives

``key`` is the application's name for the item (e.g. the enrolment's host key); ``put`` with
an existing key replaces it and makes it due now. An item is resent, with the same bytes, at
``base_delay * 2**n`` (capped at ``max_delay``, ±``jitter``) after its n-th send until acked.
``next_due_in()`` says how long a loop may sleep. SQLite in WAL mode with synchronous=FULL:
an item whose ``put`` returned survives SIGKILL and power loss.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cooee_agent.bus.limits import backoff_delay
from cooee_agent.errors import CooeeError, TransportError
from cooee_agent.files import make_directory

logger = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.sqlite3"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    key          TEXT PRIMARY KEY,
    topic        TEXT NOT NULL,
    data         BLOB NOT NULL,
    created_at   REAL NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      REAL NOT NULL,
    last_sent_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_next_at ON outbox (next_at);
"""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    key: str
    topic: str
    data: bytes
    created_at: float
    attempts: int
    next_at: float
    last_sent_at: float | None


# The first resend comes soon: a publish made while the mesh to a newly joined peer is still
# forming can go nowhere (measured with go-libp2p-pubsub: 0 of 4 delivered at once, 4 of 4 a
# tenth of a second later), and nobody should wait long for the retry that saves it.
FIRST_RESEND_S = 0.5
LAST_RESEND_S = 300.0


class Outbox:
    """A SQLite-backed queue of items awaiting an application-level acknowledgement."""

    def __init__(
        self,
        path: Path,
        *,
        base_delay: float = FIRST_RESEND_S,
        max_delay: float = LAST_RESEND_S,
        jitter: float = 0.2,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.path = Path(path)
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._jitter = jitter
        self._clock = clock
        self._rng = rng
        self._lock = threading.Lock()
        # key -> next_at for sends whose new schedule may not have reached the file.
        self._held: dict[str, float] = {}
        make_directory(self.path.parent)
        # Created 0600 before SQLite opens it; the -wal and -shm files inherit its mode.
        try:
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as error:
            raise TransportError(f"cannot open outbox {self.path}: {error.strerror}") from None
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise TransportError(
                    f"outbox {self.path} has schema {version}, newer than this agent knows"
                )
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as error:
            raise TransportError(f"cannot open outbox {self.path}: {error}") from error

    @classmethod
    def open_in(cls, state_dir: Path, **options: object) -> Outbox:
        return cls(Path(state_dir) / OUTBOX_FILE, **options)  # type: ignore[arg-type]

    def put(self, key: str, topic: str, data: bytes) -> OutboxItem:
        """Store (or replace) an item, due now; on disk when this returns."""
        now = self._clock()
        with self._lock:
            self._held.pop(key, None)
            self._db.execute(
                "INSERT OR REPLACE INTO outbox (key, topic, data, created_at, attempts, next_at,"
                " last_sent_at) VALUES (?, ?, ?, ?, 0, ?, NULL)",
                (key, topic, bytes(data), now, now),
            )
        return OutboxItem(key, topic, bytes(data), now, 0, now, None)

    def get(self, key: str) -> OutboxItem | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE key = ?", (key,)
            ).fetchone()
        return None if row is None else OutboxItem(*row)

    def items(self) -> list[OutboxItem]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM outbox ORDER BY created_at").fetchall()
        return [OutboxItem(*row) for row in rows]

    def depth(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def due(self, now: float | None = None, limit: int = 100) -> list[OutboxItem]:
        now = self._clock() if now is None else now
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE next_at <= ? ORDER BY next_at LIMIT ?",
                (now, limit),
            ).fetchall()
            held = {key: at for key, at in self._held.items() if at > now}
            self._held = held
        return [OutboxItem(*row) for row in rows if row[0] not in held]

    def next_due_in(self, now: float | None = None) -> float | None:
        """Seconds until the earliest item is due (0 if one is due), None when empty."""
        now = self._clock() if now is None else now
        with self._lock:
            row = self._db.execute("SELECT min(next_at) FROM outbox").fetchone()
        return None if row[0] is None else max(0.0, row[0] - now)

    def mark_sent(self, key: str, now: float | None = None) -> float | None:
        """Record one send and schedule the next; returns when it is due (None if acked)."""
        now = self._clock() if now is None else now
        with self._lock:
            row = self._db.execute("SELECT attempts FROM outbox WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            attempts = int(row[0])
            next_at = now + backoff_delay(
                attempts,
                base=self._base_delay,
                cap=self._max_delay,
                jitter=self._jitter,
                rng=self._rng,
            )
            # Held in memory too: when the disk is full the UPDATE fails, and without this the
            # item would stay due and be published again every turn of the loop.
            self._held[key] = next_at
            try:
                self._db.execute(
                    "UPDATE outbox SET attempts = ?, next_at = ?, last_sent_at = ? WHERE key = ?",
                    (attempts + 1, next_at, now, key),
                )
            except sqlite3.Error as error:
                raise TransportError(
                    f"outbox {self.path}: cannot record the send of {key}: {error}"
                ) from error
        return next_at

    def ack(self, key: str) -> bool:
        """The answer arrived: forget the item. False if there was none."""
        with self._lock:
            self._held.pop(key, None)
            cursor = self._db.execute("DELETE FROM outbox WHERE key = ?", (key,))
        return cursor.rowcount > 0

    def pump(self, publish: Callable[[str, bytes], None], now: float | None = None) -> int:
        """Publish every due item once and reschedule it; returns how many were published.

        A failed publish is rescheduled like a sent one, so a dead mesh is not hammered.
        """
        sent = 0
        for item in self.due(now):
            try:
                publish(item.topic, item.data)
                sent += 1
            except CooeeError as error:
                logger.warning("outbox: publishing %s failed: %s", item.key, error)
            self.mark_sent(item.key, now)
        return sent

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_COLUMNS = "key, topic, data, created_at, attempts, next_at, last_sent_at"
