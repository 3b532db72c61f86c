"""What an operator does to a host: approve a pending one (or its new key), revoke it, or forget a
revoked one so its host_id can be given out again."""

from __future__ import annotations

import logging
import sqlite3
from datetime import datetime, timedelta

from cooee_agent.leader.database import transaction
from cooee_agent.leader.errors import RegistryError
from cooee_agent.leader.registry import pending
from cooee_agent.leader.registry.admission import (
    Sealer,
    apply_record,
    free_host_id,
    store_assignment,
)
from cooee_agent.leader.registry.views import HostView, find, view
from cooee_agent.protocol.records import EnrolmentRecord, now_text, parse_time
from cooee_agent.protocol.schema import loads

log = logging.getLogger(__name__)

# How long a revoked host keeps its host_id before 'leader forget' may free it: its slot tokens
# are still in the hands of whoever used them, and after the id is reused they name another host.
FORGET_GRACE = timedelta(days=7)


def approve(
    db: sqlite3.Connection,
    selector: str,
    *,
    now: datetime,
    seal: Sealer | None = None,
    key: str | None = None,
) -> HostView:
    """Admit a pending new host (assigning its id) or pin a returning host's new key.

    ``key`` is the fingerprint of the pending key to pin; it may be left out when only one key
    is pending for the host. With ``seal``, the assignment answering the held enrolment is
    stored, so the agent's outbox, still resending that enrolment, gets it without enrolling
    anew.
    """
    with transaction(db):
        host = find(db, selector)
        if host["status"] == "revoked":
            raise RegistryError(f"host {host['hostname']}/{host['mac']} was revoked")
        claim = pending.choose(db, host, key)
        record = EnrolmentRecord.from_dict(loads(claim["record"], "pending record"))
        host_id = host["host_id"]
        if host_id is None:
            host_id = free_host_id(db)
            db.execute("UPDATE hosts SET host_id = ? WHERE row = ?", (host_id, host["row"]))
        tokens = apply_record(db, host["row"], host_id, record, claim["record"], now_text(now))
        pending.clear(db, host["row"])
        if seal is not None:
            envelope = seal(record, host_id, tokens)
            store_assignment(db, host["row"], record, envelope, now_text(now))
        log.info(
            "operator approved %s/%s with key %s",
            host["hostname"],
            host["mac"],
            pending.key_fingerprint(record.agent_ed25519),
        )
        return view(db, host["row"])


def revoke(db: sqlite3.Connection, selector: str, *, now: datetime) -> HostView:
    """Refuse the host from now on; it keeps its host_id until 'leader forget' frees it."""
    with transaction(db):
        host = find(db, selector)
        db.execute(
            "UPDATE hosts SET status = 'revoked', revoked_at = coalesce(revoked_at, ?)"
            " WHERE row = ?",
            (now_text(now), host["row"]),
        )
        pending.clear(db, host["row"])
        log.info("operator revoked %s/%s", host["hostname"], host["mac"])
        return view(db, host["row"])


def forget(
    db: sqlite3.Connection, selector: str, *, now: datetime, grace: timedelta = FORGET_GRACE
) -> HostView:
    """Delete a host revoked at least ``grace`` ago, with its assignments and
    presence: its host_id is free for the next host admitted. Returns the host as it was."""
    with transaction(db):
        host = find(db, selector)
        name = f"{host['hostname']}/{host['mac']}"
        if host["status"] != "revoked":
            raise RegistryError(f"host {name} is {host['status']}; revoke it first")
        if host["revoked_at"] is None:
            raise RegistryError(
                f"host {name} was revoked by a release that did not record when; run "
                "'leader revoke' again to start its grace period"
            )
        ready = parse_time(host["revoked_at"]) + grace
        if now < ready:
            raise RegistryError(
                f"host {name} was revoked at {host['revoked_at']}; it can be forgotten from "
                f"{now_text(ready)} (its slot tokens may still be in use until then)"
            )
        before = view(db, host["row"])
        for table in ("assignments", "presence", "pending_keys"):
            db.execute(f"DELETE FROM {table} WHERE host_row = ?", (host["row"],))
        db.execute("DELETE FROM hosts WHERE row = ?", (host["row"],))
        log.warning("operator forgot %s; host_id %s is free again", name, host["host_id"])
        return before
