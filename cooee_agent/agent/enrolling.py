"""Enrolment state: this host's identity, the pending enrolment's nonces, and its assignment.

An :class:`Enrolment` turns a discovered inventory into an :class:`Identity` (the parts of an
enrolment whose change calls for a new one), seals enrolments into the outbox under
:data:`ENROL_KEY`, takes only the assignment that answers one of its pending nonces, and keeps
``assignment.json`` and ``pending-enrolment.json`` so a restart resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cooee_agent.agent.state import ASSIGNMENT_FILE, PENDING_FILE, read_json, write_json
from cooee_agent.bus.outbox import Outbox
from cooee_agent.config import Config
from cooee_agent.discovery.model import Inventory
from cooee_agent.errors import ConfigError, CooeeError
from cooee_agent.protocol.kinds import topic_of

log = logging.getLogger(__name__)

ENROL_KEY = "enrolment"
MAX_PENDING_NONCES = 16  # earlier seals of the same enrolment whose assignment we still accept


def iso(moment: float) -> str:
    """A wall-clock time as the records write it (``2026-01-02T03:04:05Z``)."""
    from cooee_agent.protocol.records import now_text

    return now_text(datetime.fromtimestamp(moment, UTC))


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """What an enrolment says about this host, minus nonce and times; a change re-enrols."""

    digest: str
    hostname: str
    mac: str
    slots: int
    agents: int
    installed: tuple[str, ...]


class Enrolment:
    """The enrolment state machine: discovering -> enrolling (-> pending) -> enrolled.

    Owned by the daemon's main loop thread; nothing here is thread-safe or needs to be.
    """

    def __init__(
        self,
        state_dir: Path,
        outbox: Outbox,
        keys: Any,
        bundles: Sequence[Any],
        *,
        clock: Callable[[], float],
        wall: Callable[[], float],
    ) -> None:
        self.state_dir = state_dir
        self.outbox = outbox
        self.keys = keys
        self.bundles = bundles
        self._clock = clock
        self._wall = wall
        self.inventory: Inventory | None = None  # the inventory the identity was formed from
        self._tuples: list[Any] = []
        self.identity: Identity | None = None
        self.assignment: Any = None  # protocol.records.Assignment once enrolled
        self._assignment_identity: str | None = None
        self._pending: dict[str, Any] | None = None  # {"identity", "nonces", "since"}
        self.pending_since: float | None = None  # monotonic start of the pending enrolment

    def state(self, threshold: float) -> str:
        """discovering, enrolling, pending (enrolling for ``threshold`` s or more), enrolled."""
        if self.identity is None and self.assignment is None:
            return "discovering"
        if self._pending is not None and self.pending_since is not None:
            if self._clock() - self.pending_since >= threshold:
                return "pending"
            return "enrolling"
        # An assignment for an earlier identity still names the host's tokens, but the host is
        # not enrolled as it is now until the Leader answers the new enrolment.
        current = self.identity is None or self._assignment_identity == self.identity.digest
        return "enrolled" if self.assignment is not None and current else "enrolling"

    def identify(self, inventory: Inventory) -> bool:
        """Form the identity of ``inventory``; True when it differs from the current one.

        Raises CooeeError when no identity can be formed (the current one is kept).
        """
        from cooee_agent.discovery.inventory import agent_tuples

        tuples = agent_tuples(inventory)
        identity = identity_of(inventory, tuples, self.keys, self.bundles)
        changed = self.identity is None or identity.digest != self.identity.digest
        self.inventory, self._tuples, self.identity = inventory, tuples, identity
        return changed

    def load_assignment(self) -> None:
        """Take the stored assignment when it is for this agent's key."""
        from cooee_agent.protocol import Assignment, b64

        stored = read_json(self.state_dir / ASSIGNMENT_FILE)
        if not isinstance(stored, dict):
            return
        try:
            assignment = Assignment.from_dict(stored.get("assignment"))
        except Exception as error:
            log.warning("ignoring the stored assignment: %s", error)
            return
        if assignment.agent_key != b64.encode(self.keys.verify_key):
            log.warning("the stored assignment is for another agent key; enrolling again")
            return
        self.assignment = assignment
        self._assignment_identity = stored.get("identity")

    def resume_or_enrol(self, join_token: str | None) -> bool:
        """At start: keep the stored assignment if it still matches (returns True), resume a
        pending enrolment whose outbox item survived a restart, or enrol afresh."""
        if self.identity is None:
            return False
        if self.assignment is not None and self._assignment_identity == self.identity.digest:
            log.info("enrolled as host %d (stored assignment)", self.assignment.host_id)
            return True
        pending = read_json(self.state_dir / PENDING_FILE)
        item = self.outbox.get(ENROL_KEY)
        if (
            item is not None
            and isinstance(pending, dict)
            and pending.get("identity") == self.identity.digest
            and isinstance(pending.get("nonces"), list)
        ):
            self._pending = pending
            self.pending_since = self._clock()
            log.info("resuming the pending enrolment (%d send(s) so far)", item.attempts)
            return False
        self.enrol("not enrolled" if self.assignment is None else "tuples changed", join_token)
        return False

    def enrol(self, why: str, join_token: str | None) -> None:
        """Seal a fresh enrolment into the outbox; its nonce joins the pending ones."""
        from cooee_agent.agent.enrolment_record import build_enrolment
        from cooee_agent.protocol import seal_enrolment

        if self.inventory is None or self.identity is None:
            return
        record = build_enrolment(self.inventory, self._tuples, self.keys, join_token=join_token)
        data = seal_enrolment(record, self.keys, sealing_bundle(self.bundles))
        pending = self._pending
        if pending is None or pending.get("identity") != self.identity.digest:
            pending = {"identity": self.identity.digest, "nonces": [], "since": self._wall()}
            self.pending_since = self._clock()
        pending["nonces"] = [*pending["nonces"], record.nonce][-MAX_PENDING_NONCES:]
        # The nonce is on disk before the envelope is: an assignment for it is always accepted.
        write_json(self.state_dir / PENDING_FILE, pending)
        self._pending = pending
        self.outbox.put(ENROL_KEY, topic_of("enrolment"), data)
        log.info(
            "enrolling %s: %d slot(s), %d agent(s) (%s)",
            self.identity.hostname,
            self.identity.slots,
            self.identity.agents,
            why,
        )

    def take(self, data: bytes) -> Any:
        """Take an assignment meant for our pending enrolment and return it; ignore (None)
        everything else quietly."""
        from cooee_agent.protocol import open_assignment

        if self._pending is None and self.assignment is None:
            return None
        assignment = None
        for bundle in self.bundles:
            try:
                assignment = open_assignment(data, self.keys, bundle)
                break
            except Exception as error:  # others' assignments and garbage are routine here
                log.debug("ignoring an assignment: %s", error)
        if assignment is None:
            return None
        if self._is_reissue(assignment):
            return self._take_reissue(assignment)
        if self._pending is None or assignment.enrolment_nonce not in self._pending["nonces"]:
            log.debug("ignoring an assignment for enrolment %s", assignment.enrolment_nonce)
            return None
        identity = self.identity
        if identity is None or (assignment.hostname, assignment.mac) != (
            identity.hostname,
            identity.mac,
        ):
            log.warning("ignoring an assignment for another host (%s)", assignment.hostname)
            return None
        write_json(
            self.state_dir / ASSIGNMENT_FILE,
            {
                "identity": self._pending["identity"],
                "received_at": iso(self._wall()),
                "assignment": assignment.to_dict(),
            },
        )
        self.outbox.ack(ENROL_KEY)
        (self.state_dir / PENDING_FILE).unlink(missing_ok=True)
        previous = self.assignment
        self.assignment = assignment
        self._assignment_identity = self._pending["identity"]
        self._pending = None
        self.pending_since = None
        tokens = ", ".join(f"{s.slot}:{s.token}" for s in assignment.slots)
        log.info(
            "enrolled as host %d, %d slot(s): %s",
            assignment.host_id,
            len(assignment.slots),
            tokens,
            extra={"COOEE_HOST_ID": assignment.host_id},
        )
        if previous is not None and previous.host_id != assignment.host_id:
            log.warning("host_id changed from %d to %d", previous.host_id, assignment.host_id)
        return assignment

    def _is_reissue(self, assignment: Any) -> bool:
        """The Leader sent the assignment we hold again (same enrolment, host and tokens), as
        it does after rotating the DHT read key: taken without enrolling."""
        current = self.assignment
        return (
            current is not None
            and assignment.enrolment_nonce == current.enrolment_nonce
            and (assignment.host_id, assignment.hostname, assignment.mac, assignment.slots)
            == (current.host_id, current.hostname, current.mac, current.slots)
        )

    def _take_reissue(self, assignment: Any) -> Any:
        if assignment.read_key == self.assignment.read_key:
            return None
        stored = read_json(self.state_dir / ASSIGNMENT_FILE)
        identity = stored.get("identity") if isinstance(stored, dict) else None
        write_json(
            self.state_dir / ASSIGNMENT_FILE,
            {
                "identity": identity or self._assignment_identity,
                "received_at": iso(self._wall()),
                "assignment": assignment.to_dict(),
            },
        )
        self.assignment = assignment
        log.info("took the re-issued assignment of host %d (new read key)", assignment.host_id)
        return None


def leader_bundles(config: Config) -> list[Any]:
    """The configured Leader bundles; ConfigError (exit 2) when there is none."""
    from cooee_agent.protocol import parse_bundle

    if not config.leader.keys:
        where = config.source or "the configuration"
        raise ConfigError(
            f"{where}: [leader] keys is empty; "
            "add the bundle printed by `cooee-agent leader keygen`"
        )
    try:
        return [parse_bundle(text) for text in config.leader.keys]
    except CooeeError as error:
        raise ConfigError(f"[leader] keys: {error}") from error


def sealing_bundle(bundles: Sequence[Any]) -> Any:
    """One bundle sealing to every configured recipient (several during a key rotation)."""
    from cooee_agent.protocol import LeaderBundle

    recipients = tuple(dict.fromkeys(r for bundle in bundles for r in bundle.recipients))
    return LeaderBundle(verify_key=bundles[-1].verify_key, recipients=recipients)


def identity_of(inventory: Inventory, tuples: Sequence[Any], keys: Any, bundles: Any) -> Identity:
    """The parts of an enrolment whose change calls for a new one (DiscoveryError if none)."""
    from cooee_agent.agent.enrolment_record import build_enrolment
    from cooee_agent.protocol import b64

    record = build_enrolment(inventory, tuples, keys, nonce="0" * 32)
    value = {
        "agent": b64.encode(keys.verify_key),
        "leaders": sorted(b64.encode(bundle.verify_key) for bundle in bundles),
        "hostname": record.host.hostname,
        "mac": record.host.mac,
        "slots": [[slot.slot, slot.gpu_id] for slot in record.slots],
        "agents": sorted(agent.key for agent in record.agents),
    }
    digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
    return Identity(
        digest=digest,
        hostname=record.host.hostname,
        mac=record.host.mac,
        slots=len(record.slots),
        agents=len(record.agents),
        installed=tuple(sorted({agent.tuple.model for agent in record.agents})),
    )
