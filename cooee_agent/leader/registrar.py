"""The Leader's ingest pipeline: open and verify an enrolment envelope, apply it to the registry
(replay cache included), and seal the assignment back to the agent. It never raises for bad
input: every refusal is an IngestResult with its reason, logged once.

An agent's outbox resends the same enrolment bytes until its assignment arrives. Such a resend is
still refused (``replayed``, or ``stale`` once old), but when it repeats an enrolment that was
accepted, the result carries the stored assignment so a server can send it again."""

from __future__ import annotations

import hmac
import logging
import stat
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cooee_agent.errors import CooeeError, TransportError
from cooee_agent.leader.handled import Handled
from cooee_agent.leader.registry import REGISTRY_FILE, Registry
from cooee_agent.leader.registry.admission import NO_LIMITS, UNRECORDED, Enrolment, Limits, Outcome
from cooee_agent.leader.registry.views import HostView
from cooee_agent.log_limit import LimitedWarnings
from cooee_agent.protocol.errors import RejectedError
from cooee_agent.protocol.keys import LeaderKeys, load_leader_keys
from cooee_agent.protocol.kinds import topic_of
from cooee_agent.protocol.records import (
    Assignment,
    EnrolmentRecord,
    SlotToken,
    new_nonce,
    now_text,
    parse_time,
)
from cooee_agent.protocol.sealing import (
    DEFAULT_WINDOW,
    OpenedEnrolment,
    Window,
    open_enrolment,
    seal_assignment,
)

if TYPE_CHECKING:
    from cooee_agent.bus.transport import Message
    from cooee_agent.leader.dispatch import Dispatcher

log = logging.getLogger(__name__)
# Anyone on the mesh can cause these: logged in full a few times a minute (log_limit).
_refusals = LimitedWarnings(log)

# Registry outcomes an operator has to act on; the Leader raises a call for each.
OPERATOR_OUTCOMES = {
    "pending": ("warning", "key-change-pending"),
    "not-approved": ("warning", "approval-pending"),
    "exhausted": ("critical", "host-ids-exhausted"),
}
# Refusals by a first-contact limit: counted, and reported once per LIMIT_REPORT_S (a flood of
# forged enrolments must not become a flood of log lines or calls).
LIMIT_OUTCOMES = UNRECORDED
LIMIT_REPORT_S = 60.0

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
    # Sealed to the agent's age recipient: the new assignment when accepted, or the stored one
    # when a refused envelope repeats an accepted enrolment (``resend`` is then True).
    assignment_envelope: bytes | None = None
    resend: bool = False
    # Fingerprints of other keys that claimed this host (an operator is called).
    competing: tuple[str, ...] = ()

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


class JoinTokensFileError(CooeeError):
    """The join-tokens file cannot be used: unreadable, or readable by others."""


def _read_join_tokens(path: Path) -> frozenset[str] | None:
    """One token a line; ``#`` comments. No file means the file adds no tokens.

    The tokens are secrets in clear, so the file is refused unless only its owner can read it
    (as private keys are); ``leader token create`` keeps tokens as salted hashes instead.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeError) as error:
        raise JoinTokensFileError(f"cannot read the join tokens in {path}: {error}") from None
    if mode & 0o077:
        raise JoinTokensFileError(
            f"{path} holds join tokens and is accessible by group or others (mode {mode:04o}); "
            f"run 'chmod 600 {path}'"
        )
    lines = (line.strip() for line in text.splitlines())
    return frozenset(line for line in lines if line and not line.startswith("#"))


class Registrar:
    """The reference Leader over one state directory (keys, registry, replay cache).

    First contact: with no join token configured (no ``join-tokens`` file in the state
    directory and none ever made by ``leader token create``) a new host is admitted on first use
    (its key is pinned); otherwise a new host must carry a valid join token or it is held as
    pending for ``leader approve``. ``limits`` bound both ways in (``admission.Limits``).
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        window: Window = DEFAULT_WINDOW,
        keys: LeaderKeys | None = None,
        join_tokens: Collection[str] | None = None,
        limits: Limits = NO_LIMITS,
    ) -> None:
        self.state_dir = state_dir
        self.window = window
        self.keys = keys if keys is not None else load_leader_keys(state_dir)
        self.join_tokens = (
            frozenset(join_tokens)
            if join_tokens is not None
            else _read_join_tokens(state_dir / JOIN_TOKENS_FILE)
        )
        self.limits = limits
        self.registry = Registry(state_dir / REGISTRY_FILE)
        self.limited: Counter[str] = Counter()  # refusals by a limit not yet reported
        # The first refusal is reported at once, later ones once LIMIT_REPORT_S has passed.
        self._limit_reported_at: float | None = None
        # Set when the Leader runs the DHT: assignments then carry the read key (its
        # ``secret``), which agents before the field refuse (docs/PROTOCOL.md section 11).
        self.read_key: Any = None

    def close(self) -> None:
        self.registry.close()

    def __enter__(self) -> Registrar:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _admitted(self, join_token: str | None, *, open_door: bool) -> bool:
        """Admitted without spending a registry token: no tokens configured at all, or one
        listed in the file. (A registry token is checked and spent inside the transaction.)"""
        if open_door:
            return True
        if join_token is None or self.join_tokens is None:
            return False
        return any(hmac.compare_digest(join_token, known) for known in self.join_tokens)

    def limit_report(self, moment: datetime) -> str | None:
        """What the first-contact limits refused since the last report, at most once per
        LIMIT_REPORT_S; None when nothing is due."""
        if not self.limited:
            return None
        last = self._limit_reported_at
        if last is not None and moment.timestamp() - last < LIMIT_REPORT_S:
            return None
        counts = ", ".join(f"{count} {reason}" for reason, count in sorted(self.limited.items()))
        self.limited.clear()
        self._limit_reported_at = moment.timestamp()
        return (
            f"first contact refused ({counts}) in the last {LIMIT_REPORT_S:.0f} s: at most "
            f"{self.limits.admissions_per_minute} new hosts a minute, "
            f"{self.limits.max_pending} held for approval"
        )

    def _count_limited(self, outcome: Outcome) -> None:
        self.limited[outcome.reason] += 1

    def sealer(self, moment: datetime):  # type: ignore[no-untyped-def]
        """``seal(record, host_id, tokens)``: the assignment envelope answering ``record``."""
        return self._sealer(moment)

    def _sealer(self, moment: datetime):  # type: ignore[no-untyped-def]
        read_key = self.read_key
        issued_at = now_text(moment)  # the batch's moment, formatted once for all its answers

        def seal(record: EnrolmentRecord, host_id: int, tokens: tuple[SlotToken, ...]) -> bytes:
            extra = {} if read_key is None else {"read_key": read_key.secret}
            assignment = Assignment(
                nonce=new_nonce(),
                issued_at=issued_at,
                enrolment_nonce=record.nonce,
                agent_key=record.agent_ed25519,
                host_id=host_id,
                hostname=record.host.hostname,
                mac=record.host.mac,
                slots=tokens,
                **extra,
            )
            return seal_assignment(assignment, self.keys, record.agent_age, sent_at=moment)

        return seal

    def ingest(self, envelope: bytes, *, now: datetime | None = None) -> IngestResult:
        """Open, verify and apply one enrolment envelope; never raises for what it was sent."""
        (result,) = self.ingest_many([envelope], now=now)
        return result

    def ingest_many(
        self, envelopes: Sequence[bytes], *, now: datetime | None = None
    ) -> list[IngestResult]:
        """Open and verify each envelope, then apply the good ones in one registry transaction
        (group commit); a result per envelope, in order. Never raises for what it was sent."""
        moment = now if now is not None else datetime.now(UTC)
        results: list[IngestResult | None] = []
        opened: list[tuple[int, OpenedEnrolment]] = []
        for envelope in envelopes:
            try:
                enrolment = open_enrolment(envelope, self.keys, window=self.window, now=moment)
            except RejectedError as error:
                results.append(self._refused(envelope, error, moment))
                continue
            opened.append((len(results), enrolment))
            results.append(None)
        open_door = self.join_tokens is None and not self.registry.join_tokens_configured()
        outcomes = self.registry.enrol_batch(
            [
                Enrolment(
                    enrolment.record,
                    self._nonce_expiry(enrolment.record),
                    self._admitted(enrolment.record.join_token, open_door=open_door),
                    document=_document(enrolment),
                )
                for _, enrolment in opened
            ],
            now=moment,
            seal=self._sealer(moment),
            limits=self.limits,
        )
        for (index, enrolment), outcome in zip(opened, outcomes, strict=True):
            if outcome.reason in LIMIT_OUTCOMES:
                self._count_limited(outcome)
            results[index] = self._result(enrolment.record, outcome)
        return [result for result in results if result is not None]

    def _nonce_expiry(self, record: EnrolmentRecord) -> int:
        expires = int(parse_time(record.issued_at).timestamp())
        return expires + self.window.max_age_s + self.window.max_skew_s

    def _refused(self, envelope: bytes, error: RejectedError, moment: datetime) -> IngestResult:
        if error.reason == "stale":
            resent = self._resend_of_stale(envelope, moment)
            if resent is not None:
                return resent
        _refusals.warning(error.reason, "refused enrolment: %s: %s", error.reason, error.detail)
        return IngestResult(False, error.reason, error.detail)

    def _result(self, record: EnrolmentRecord, outcome: Outcome) -> IngestResult:
        common = {
            "host_id": outcome.host_id,
            "hostname": record.host.hostname,
            "mac": record.host.mac,
            "competing": outcome.competing,
        }
        if outcome.reason == "replayed":
            stored = self.registry.stored_assignment(record.nonce, record.agent_ed25519)
            if stored is not None:
                # Whether it is sent again is the dispatcher's call (at most once per gap):
                # said where it is decided, in _answer.
                log.debug("resent enrolment %s of %s", record.nonce, record.host.hostname)
                return IngestResult(
                    False,
                    outcome.reason,
                    outcome.detail,
                    assignment_envelope=stored,
                    resend=True,
                    **common,  # type: ignore[arg-type]
                )
        if outcome.reason in LIMIT_OUTCOMES:
            # Counted and reported once per window (limit_report), not once per message.
            log.debug("refused enrolment of %s: %s", record.host.hostname, outcome.reason)
            return IngestResult(False, outcome.reason, outcome.detail, **common)  # type: ignore[arg-type]
        if not outcome.accepted:
            log.warning(
                "refused enrolment of %s: %s: %s",
                record.host.hostname,
                outcome.reason,
                outcome.detail,
            )
            return IngestResult(False, outcome.reason, outcome.detail, **common)  # type: ignore[arg-type]
        assert outcome.host_id is not None
        log.info(
            "assigned host_id %d to %s",
            outcome.host_id,
            record.host.hostname,
            extra={"COOEE_HOST_ID": outcome.host_id},
        )
        return IngestResult(
            True,
            "accepted",
            outcome.detail,
            tokens=outcome.tokens,
            assignment_envelope=outcome.assignment_envelope,
            **common,  # type: ignore[arg-type]
        )

    def _resend_of_stale(self, envelope: bytes, moment: datetime) -> IngestResult | None:
        """A stale envelope that repeats an accepted enrolment still gets its stored assignment:
        a Leader that was down longer than the window must not strand the agents' outboxes."""
        ageless = Window(max_age_s=10 * 365 * 86400, max_skew_s=self.window.max_skew_s)
        try:
            record = open_enrolment(envelope, self.keys, window=ageless, now=moment).record
        except RejectedError:
            return None
        stored = self.registry.stored_assignment(record.nonce, record.agent_ed25519)
        if stored is None:
            return None
        log.debug("stale resend of enrolment %s of %s", record.nonce, record.host.hostname)
        return IngestResult(
            False,
            "stale",
            f"enrolment {record.nonce} is older than the freshness window; it was accepted before",
            hostname=record.host.hostname,
            mac=record.host.mac,
            assignment_envelope=stored,
            resend=True,
        )

    def approve(
        self, selector: str, *, now: datetime | None = None, key: str | None = None
    ) -> HostView:
        """``Registry.approve`` that also stores the assignment answering the held enrolment."""
        moment = now if now is not None else datetime.now(UTC)
        return self.registry.approve(selector, now=moment, seal=self._sealer(moment), key=key)


def handle_enrolments(dispatcher: Dispatcher, messages: Sequence[Message]) -> list[Handled]:
    """The kinds table's handler of enrolments, a batch at a time: ingest them together (one
    commit), then answer each with its assignment (a resend at most once per gap), or raise an
    operator call for an outcome that needs one. No answer leaves before its batch is durable."""
    results = dispatcher.registrar.ingest_many(
        [message.data for message in messages], now=dispatcher.clock()
    )
    handled = [
        _answer(dispatcher, message, result)
        for message, result in zip(messages, results, strict=True)
    ]
    report_limits(dispatcher)
    return handled


def report_limits(dispatcher: Dispatcher) -> None:
    """What the first-contact limits refused, once per window at most: a log line and a call.
    Called after each batch and on the dispatcher's tick, so the last refusals of a flood are
    reported even when nothing more arrives."""
    report = dispatcher.registrar.limit_report(dispatcher.clock())
    if report is not None:
        dispatcher.warn_operator("first-contact-limited", report)


def _answer(dispatcher: Dispatcher, message: Message, result: IngestResult) -> Handled:
    if result.competing and dispatcher.calls is not None:
        held = "admitted" if result.accepted else "held"
        dispatcher.calls.record_leader_call(
            hostname=result.hostname or "unknown",
            mac=result.mac,
            host_id=result.host_id,
            severity="critical" if result.accepted else "warning",
            reason="competing-keys",
            detail=f"other keys claimed this host: {', '.join(result.competing)}; {held} "
            f"the one that enrolled last ('leader list' shows the pending keys)",
            now=dispatcher.clock(),
        )
    if result.assignment_envelope is not None and dispatcher.may_send(result):
        try:
            dispatcher.publish(topic_of("assignment"), result.assignment_envelope)
        except TransportError as error:
            # The agent resends its enrolment until it is answered; the next one retries.
            log.warning("could not publish the assignment of %s: %s", result.hostname, error)
            return Handled(message.topic, result.reason)
        if result.resend:
            log.info("resent enrolment of %s: sent its assignment again", result.hostname)
        return Handled(message.topic, result.reason, published=True)
    if result.resend:
        log.debug("resent enrolment of %s: its assignment was sent moments ago", result.hostname)
    if result.reason in OPERATOR_OUTCOMES and dispatcher.calls is not None:
        severity, reason = OPERATOR_OUTCOMES[result.reason]
        dispatcher.calls.record_leader_call(
            hostname=result.hostname or "unknown",
            mac=result.mac,
            host_id=result.host_id,
            severity=severity,
            reason=reason,
            detail=result.detail,
            now=dispatcher.clock(),
        )
    return Handled(message.topic, result.reason)


def _document(enrolment: OpenedEnrolment) -> str | None:
    """The record's text as the registry keeps it (without a join token), when the bytes the
    agent signed are that text already: no join token, and canonical."""
    if enrolment.record.join_token is not None or enrolment.record_bytes is None:
        return None
    return enrolment.record_bytes.decode("utf-8")
