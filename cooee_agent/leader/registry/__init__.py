"""The Leader's registry: hosts, their pinned keys, slots and agents, host_id assignment, the
replay cache, the assignments sent (for resends) and each host's presence, in one SQLite file
(WAL).

``Registry`` holds the connection; the work is done in one module per concern, as functions of
that connection: ``schema`` (tables, migrations, invariants), ``admission`` (enrolments,
host_ids, stored assignments), ``join_tokens`` (tokens kept as salted hashes), ``pending``
(keys held for an operator), ``presence`` (what was last heard from each host), ``actions``
(an operator's approve and revoke) and ``views`` (``HostView``, finding a host).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cooee_agent.leader.registry import (
    actions,
    admission,
    join_tokens,
    pending,
    presence,
    schema,
    views,
)
from cooee_agent.leader.registry.admission import NO_LIMITS, Enrolment, Limits, Outcome, Sealer
from cooee_agent.leader.registry.join_tokens import JoinToken
from cooee_agent.leader.registry.pending import PendingKey
from cooee_agent.leader.registry.presence import PinnedHost
from cooee_agent.leader.registry.views import HostView
from cooee_agent.protocol.records import EnrolmentRecord

REGISTRY_FILE = "registry.sqlite3"


class Registry:
    """One connection to the registry file; use one per thread or process."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = path
        self._db = schema.open_registry(path, busy_timeout_s=busy_timeout_s)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- enrolment -----------------------------------------------------------------------------

    def enrol(
        self,
        record: EnrolmentRecord,
        *,
        now: datetime,
        nonce_expires_at: int,
        admitted: bool = True,
        seal: Sealer | None = None,
    ) -> Outcome:
        """Apply one verified enrolment (a batch of one)."""
        (outcome,) = self.enrol_batch(
            [Enrolment(record, nonce_expires_at, admitted)], now=now, seal=seal
        )
        return outcome

    def enrol_batch(
        self,
        enrolments: Sequence[Enrolment],
        *,
        now: datetime,
        seal: Sealer | None = None,
        limits: Limits = NO_LIMITS,
    ) -> list[Outcome]:
        """Apply verified enrolments in one transaction (``admission.enrol_batch``)."""
        return admission.enrol_batch(self._db, enrolments, now=now, seal=seal, limits=limits)

    def stored_assignment(self, enrolment_nonce: str, agent_key: str) -> bytes | None:
        return admission.stored_assignment(self._db, enrolment_nonce, agent_key)

    # -- presence ------------------------------------------------------------------------------

    def pinned_host(self, ed25519: str) -> PinnedHost | None:
        return presence.pinned_host(self._db, ed25519)

    def known_key(self, ed25519: str) -> sqlite3.Row | None:
        return presence.known_key(self._db, ed25519)

    def record_presence(
        self, host: PinnedHost, record: dict[str, Any], *, now: datetime, deadline: float
    ) -> str | None:
        """Apply an availability or leaving record (``presence.record_presence``)."""
        return presence.record_presence(self._db, host, record, now=now, deadline=deadline)

    def sweep_offline(self, now: datetime) -> list[tuple[int, str]]:
        return presence.sweep_offline(self._db, now)

    def next_deadline(self) -> float | None:
        return presence.next_deadline(self._db)

    # -- operator actions ----------------------------------------------------------------------

    def approve(
        self,
        selector: str,
        *,
        now: datetime,
        seal: Sealer | None = None,
        key: str | None = None,
    ) -> HostView:
        """Admit a held host, pinning the pending key whose fingerprint is ``key`` (may be left
        out when only one key is pending)."""
        return actions.approve(self._db, selector, now=now, seal=seal, key=key)

    def revoke(self, selector: str, *, now: datetime | None = None) -> HostView:
        return actions.revoke(self._db, selector, now=now or datetime.now(UTC))

    def forget(
        self, selector: str, *, now: datetime, grace: timedelta = actions.FORGET_GRACE
    ) -> HostView:
        """Delete a host revoked at least ``grace`` ago, freeing its host_id."""
        return actions.forget(self._db, selector, now=now, grace=grace)

    def pending_keys(self, selector: str) -> list[PendingKey]:
        """Every key claiming the host that waits for an operator, oldest first."""
        return pending.held(self._db, views.find(self._db, selector)["row"])

    # -- join tokens ---------------------------------------------------------------------------

    def create_join_token(
        self,
        *,
        now: datetime,
        uses: int = 1,
        expires_at: datetime | None = None,
        note: str | None = None,
    ) -> tuple[int, str]:
        """A new join token: (id, token); only its salted hash is kept."""
        return join_tokens.create(self._db, now=now, uses=uses, expires_at=expires_at, note=note)

    def list_join_tokens(self) -> list[JoinToken]:
        return join_tokens.listing(self._db)

    def revoke_join_token(self, token_id: int, *, now: datetime) -> JoinToken:
        return join_tokens.revoke(self._db, token_id, now=now)

    def join_tokens_configured(self) -> bool:
        return join_tokens.configured(self._db)

    # -- queries -------------------------------------------------------------------------------

    def hosts(self) -> list[HostView]:
        return views.hosts(self._db)

    def host(self, selector: str) -> HostView:
        return views.view(self._db, views.find(self._db, selector)["row"])

    def host_by_id(self, host_id: int) -> HostView | None:
        return views.host_by_id(self._db, host_id)

    def active_enrolments(self) -> list[views.ActiveEnrolment]:
        return views.active_enrolments(self._db)

    def active_enrolment(self, host_id: int) -> views.ActiveEnrolment | None:
        return views.active_enrolment(self._db, host_id)

    def data_version(self) -> int:
        """Changes whenever another connection commits: a cheap "has anything changed?"."""
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def check(self) -> list[str]:
        return schema.check(self._db)
