"""The Leader's handler of PR and DR submissions (the kinds table's ``pr`` and ``dr`` rows):
open and verify, check the sender is an enrolled, active host, store with its audit entries, and
answer with a signed receipt sealed to the agent. It never raises for what it was sent.

Refusals it can answer (the sender's key is known, so is its age recipient) get a receipt with
outcome ``refused`` and the reason; nothing is stored or audited for them. Envelopes that do not
open (bad signature, wrong seal, stale, malformed) or come from an unknown key are logged and
dropped: there is nobody verified to answer.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cooee_agent.errors import CooeeError
from cooee_agent.leader.handled import Handled
from cooee_agent.leader.registry.views import host_tokens
from cooee_agent.leader.submission_book import Sender, SubmissionBook, receipt_record
from cooee_agent.log_limit import LimitedWarnings
from cooee_agent.protocol.errors import RejectedError
from cooee_agent.protocol.keys import LeaderKeys
from cooee_agent.protocol.kinds import topic_of
from cooee_agent.protocol.sealing import DEFAULT_WINDOW, Window, open_from_agent, seal_to_agent
from cooee_agent.protocol.submissions import SUBMISSION_KINDS, submission_digest

if TYPE_CHECKING:
    from cooee_agent.bus.transport import Message, Transport
    from cooee_agent.leader.dispatch import Dispatcher

log = logging.getLogger(__name__)
# Anyone on the mesh can cause these: logged in full a few times a minute (log_limit).
_refusals = LimitedWarnings(log)


@dataclass(frozen=True, slots=True)
class Heard:
    """What became of one submission envelope: ``reason`` is ``received`` or why not, and the
    sealed answers to publish (the receipt; on a resend, what was sent before)."""

    stored: bool
    reason: str
    detail: str
    replies: tuple[bytes, ...] = field(default=())


def lookup_sender(registry_path: Path, ed25519: str) -> tuple[str, Sender | None, str]:
    """(status, sender, detail) of the host holding this key: status ``active`` with a Sender
    for an enrolled host's pinned key; else why it may not submit, with the age recipient to
    answer (``unknown-key`` has none). Reads the registry file read-only."""
    db = sqlite3.connect(f"{registry_path.absolute().as_uri()}?mode=ro", uri=True, timeout=30.0)
    try:
        db.row_factory = sqlite3.Row
        row = db.execute(
            "SELECT row, host_id, hostname, status, ed25519, age, pending_ed25519, pending_age,"
            " record"
            " FROM hosts WHERE ed25519 = ? OR pending_ed25519 = ?"
            " ORDER BY ed25519 = ? DESC LIMIT 1",
            (ed25519, ed25519, ed25519),
        ).fetchone()
        if row is None:
            return "unknown-key", None, f"{ed25519} is no enrolled host's key"
        tokens = host_tokens(row["host_id"], row["record"])
    finally:
        db.close()
    pinned = row["ed25519"] == ed25519
    age = row["age"] if pinned else row["pending_age"]
    sender = Sender(ed25519, age or "", row["host_id"] or 0, row["hostname"], tokens)
    if row["status"] == "revoked":
        return "revoked", sender, f"{row['hostname']} is revoked"
    if row["status"] != "active" or row["host_id"] is None:
        return "not-approved", sender, f"{row['hostname']} waits for `leader approve`"
    if not pinned:
        return (
            "key-change-pending",
            sender,
            f"this key of {row['hostname']} waits for `leader approve`",
        )
    return "active", sender, ""


def hear_submission(
    book: SubmissionBook,
    registry_path: Path,
    keys: LeaderKeys,
    data: bytes,
    *,
    now: datetime,
    window: Window = DEFAULT_WINDOW,
) -> Heard:
    try:
        record, signed, envelope = open_from_agent(
            data, keys, SUBMISSION_KINDS, window=window, now=now
        )
    except RejectedError as error:
        return _dropped(error.reason, error.detail)
    status, sender, detail = lookup_sender(registry_path, envelope.sender)
    digest = submission_digest(signed)
    if sender is None:
        return _dropped(status, detail)
    if status != "active":
        log.warning(
            "refused %s %s from %s: %s: %s",
            record["kind"],
            record["nonce"],
            sender.hostname,
            status,
            detail,
        )
        if not sender.age:
            return Heard(False, status, detail)
        receipt = receipt_record(
            record, sender.ed25519, digest, now=now, audit_seq=None, reason=status, detail=detail
        )
        return Heard(False, status, detail, (seal_to_agent("receipt", receipt, keys, sender.age),))
    stored = book.store(record, signed, sender, keys, now=now)
    if stored is None:
        answers = book.answers(record["nonce"], digest)
        detail = f"{record['kind']} {record['nonce']} was stored before"
        log.info("%s; %d answer(s) sent again", detail, len(answers))
        return Heard(False, "replayed", detail, tuple(answers))
    item = stored.submission
    log.info(
        "%s %s from %s (host_id %d): %r, audit entry %d",
        item.kind,
        item.id,
        item.hostname,
        item.host_id,
        item.title,
        item.audit_seq,
    )
    return Heard(True, "received", f"audit entry {item.audit_seq}", (stored.receipt,))


def _dropped(reason: str, detail: str) -> Heard:
    _refusals.warning(reason, "dropped a submission: %s: %s", reason, detail)
    return Heard(False, reason, detail)


def handle_submission(dispatcher: Dispatcher, message: Message) -> Handled:
    """The kinds table's handler of ``pr`` and ``dr`` (ignored by a Leader without a book)."""
    book = dispatcher.submissions
    if book is None:
        return Handled(message.topic, "ignored")
    registrar = dispatcher.registrar
    heard = hear_submission(
        book,
        registrar.registry.path,
        registrar.keys,
        message.data,
        now=dispatcher.clock(),
        window=registrar.window,
    )
    published = False
    for reply in heard.replies:
        try:
            dispatcher.publish(topic_of("receipt"), reply)
            published = True
        except CooeeError as error:
            log.warning("could not send the receipt: %s", error)
    return Handled(message.topic, heard.reason, published)


def handle_submissions(dispatcher: Dispatcher, messages: Sequence[Message]) -> list[Handled]:
    """The same for a batch of messages, in order: the handler form of a Dispatcher that hands
    its handlers batches (``handler(dispatcher, messages) -> list[Handled]``)."""
    return [handle_submission(dispatcher, message) for message in messages]


class DecisionCourier:
    """Sends the decisions an operator made (``leader submission accept|reject``, another
    process) from the serving Leader: polls its own connection to the submissions file."""

    def __init__(self, path: Path, transport: Transport, *, interval_s: float = 1.0) -> None:
        self.path = path
        self.transport = transport
        self.interval_s = interval_s
        self._thread: threading.Thread | None = None

    def start(self, stop: threading.Event) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(stop,), name="leader-decisions", daemon=True
        )
        self._thread.start()

    def _run(self, stop: threading.Event) -> None:
        with SubmissionBook(self.path) as book:
            while not stop.wait(self.interval_s):
                try:
                    self.send_due(book)
                except Exception:
                    log.exception("sending decisions failed; trying again")

    def send_due(self, book: SubmissionBook) -> int:
        """Publish each decision not sent yet, once a peer has joined the receipt topic."""
        topic = topic_of("decision")
        peers = getattr(self.transport, "topic_peers", None)
        if peers is not None and not peers(topic):
            return 0
        sent = 0
        for submission_id, envelope in book.unsent_decisions():
            self.transport.publish(topic, envelope)
            book.mark_decision_sent(submission_id, now=datetime.now(UTC))
            sent += 1
            log.info("sent the decision on submission %s", submission_id)
        return sent
