"""The Leader's ingest pipeline: open and verify an enrolment envelope, apply it to the registry
(replay cache included), and seal the assignment back to the agent. It never raises for bad
input: every refusal is an IngestResult with its reason, logged once."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cooee_agent.enrolment.build import new_nonce
from cooee_agent.enrolment.errors import RejectedError
from cooee_agent.enrolment.keys import LeaderKeys, load_leader_keys
from cooee_agent.enrolment.records import Assignment, SlotToken, now_text, parse_time
from cooee_agent.enrolment.sealing import DEFAULT_WINDOW, Window, open_enrolment, seal_assignment
from cooee_agent.leader.registry import REGISTRY_FILE, Registry

log = logging.getLogger(__name__)

JOIN_TOKENS_FILE = "join-tokens"


@dataclass(frozen=True, slots=True)
class IngestResult:
    """``reason`` is ``accepted`` or why not: a rejection reason (wrong-recipient, bad-signature,
    stale, replayed, schema, key-mismatch) or a registry outcome (pending, not-approved, revoked,
    exhausted)."""

    accepted: bool
    reason: str
    detail: str
    host_id: int | None = None
    hostname: str | None = None
    mac: str | None = None
    tokens: tuple[SlotToken, ...] = ()
    assignment_envelope: bytes | None = None  # sealed to the agent's age recipient

    def to_dict(self) -> dict[str, object]:
        return {
            "accepted": self.accepted,
            "reason": self.reason,
            "detail": self.detail,
            "host_id": self.host_id,
            "hostname": self.hostname,
            "mac": self.mac,
            "tokens": [{"slot": t.slot, "gpu_id": t.gpu_id, "token": t.token} for t in self.tokens],
        }


def _read_join_tokens(path: Path) -> frozenset[str] | None:
    """One token a line; ``#`` comments. No file means no join tokens are required."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    lines = (line.strip() for line in text.splitlines())
    return frozenset(line for line in lines if line and not line.startswith("#"))


class Leader:
    """The reference Leader over one state directory (keys, registry, replay cache).

    First contact: without a ``join-tokens`` file in the state directory a new host is admitted
    on first use (its key is pinned); with one, a new host must carry a listed join token or it
    is held as pending for ``leader approve``.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        window: Window = DEFAULT_WINDOW,
        keys: LeaderKeys | None = None,
        join_tokens: Collection[str] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.window = window
        self.keys = keys if keys is not None else load_leader_keys(state_dir)
        self.join_tokens = (
            frozenset(join_tokens)
            if join_tokens is not None
            else _read_join_tokens(state_dir / JOIN_TOKENS_FILE)
        )
        self.registry = Registry(state_dir / REGISTRY_FILE)

    def close(self) -> None:
        self.registry.close()

    def __enter__(self) -> Leader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _admitted(self, join_token: str | None) -> bool:
        if self.join_tokens is None:
            return True
        if join_token is None:
            return False
        return any(hmac.compare_digest(join_token, known) for known in self.join_tokens)

    def ingest(self, envelope: bytes, *, now: datetime | None = None) -> IngestResult:
        """Open, verify and apply one enrolment envelope; never raises for what it was sent."""
        moment = now if now is not None else datetime.now(UTC)
        try:
            record, _ = open_enrolment(envelope, self.keys, window=self.window, now=moment)
        except RejectedError as error:
            log.warning("refused enrolment: %s: %s", error.reason, error.detail)
            return IngestResult(False, error.reason, error.detail)
        expires = int(parse_time(record.issued_at).timestamp())
        expires += self.window.max_age_s + self.window.max_skew_s
        outcome = self.registry.enrol(
            record,
            now=moment,
            nonce_expires_at=expires,
            admitted=self._admitted(record.join_token),
        )
        common = {
            "host_id": outcome.host_id,
            "hostname": record.host.hostname,
            "mac": record.host.mac,
        }
        if not outcome.accepted:
            log.warning(
                "refused enrolment of %s: %s: %s",
                record.host.hostname,
                outcome.reason,
                outcome.detail,
            )
            return IngestResult(False, outcome.reason, outcome.detail, **common)  # type: ignore[arg-type]
        assert outcome.host_id is not None
        assignment = Assignment(
            nonce=new_nonce(),
            issued_at=now_text(moment),
            enrolment_nonce=record.nonce,
            agent_key=record.agent_ed25519,
            host_id=outcome.host_id,
            hostname=record.host.hostname,
            mac=record.host.mac,
            slots=outcome.tokens,
        )
        sealed = seal_assignment(assignment, self.keys, record.agent_age, sent_at=moment)
        log.info("assigned host_id %d to %s", outcome.host_id, record.host.hostname)
        return IngestResult(
            True,
            "accepted",
            outcome.detail,
            tokens=outcome.tokens,
            assignment_envelope=sealed,
            **common,  # type: ignore[arg-type]
        )
