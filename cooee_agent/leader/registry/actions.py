"""What an operator does to a host: approve a pending one (or its new key), or revoke it."""

from __future__ import annotations

import logging
import sqlite3
from datetime import datetime

from cooee_agent.leader.database import transaction
from cooee_agent.leader.errors import RegistryError
from cooee_agent.leader.registry.admission import (
    Sealer,
    apply_record,
    free_host_id,
    store_assignment,
)
from cooee_agent.leader.registry.views import HostView, find, view
from cooee_agent.protocol.records import EnrolmentRecord, now_text
from cooee_agent.protocol.schema import loads

log = logging.getLogger(__name__)


def approve(
    db: sqlite3.Connection, selector: str, *, now: datetime, seal: Sealer | None = None
) -> HostView:
    """Admit a pending new host (assigning its id) or pin a returning host's new key.

    With ``seal``, the assignment answering the held enrolment is stored, so the agent's
    outbox, still resending that enrolment, gets it without enrolling anew.
    """
    with transaction(db):
        host = find(db, selector)
        if host["pending_ed25519"] is None:
            raise RegistryError(
                f"host {host['hostname']}/{host['mac']} has nothing pending to approve"
            )
        record = EnrolmentRecord.from_dict(loads(host["pending_record"], "pending record"))
        host_id = host["host_id"]
        if host_id is None:
            host_id = free_host_id(db)
            db.execute("UPDATE hosts SET host_id = ? WHERE row = ?", (host_id, host["row"]))
        tokens = apply_record(
            db, host["row"], host_id, record, host["pending_record"], now_text(now)
        )
        if seal is not None:
            envelope = seal(record, host_id, tokens)
            store_assignment(db, record, envelope, now_text(now))
        log.info("operator approved %s/%s", host["hostname"], host["mac"])
        return view(db, host["row"])


def revoke(db: sqlite3.Connection, selector: str) -> HostView:
    """Refuse the host from now on; it keeps its host_id so no other host ever gets it."""
    with transaction(db):
        host = find(db, selector)
        db.execute(
            "UPDATE hosts SET status = 'revoked', pending_ed25519 = NULL, pending_age = NULL,"
            " pending_record = NULL WHERE row = ?",
            (host["row"],),
        )
        log.info("operator revoked %s/%s", host["hostname"], host["mac"])
        return view(db, host["row"])
