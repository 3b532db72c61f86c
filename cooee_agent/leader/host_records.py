"""The Leader's side of the DHT: the cluster's read key, and one host record per host under
``/cooee/host/<host_id>``, put after each change of the registry and again on a schedule.

The publisher runs on its own thread with its own registry connection. It notices a change
through SQLite's ``data_version`` (an enrolment the dispatcher applied, a revoke by
``leader revoke`` from another process), so nothing else has to call it. A newly revoked host
rotates the read key: every record is put again under the new key (the revoked host's own as
``status = revoked``), and every active host is sent its assignment again with the new key
(same ``enrolment_nonce``: a re-issue, which agents take without enrolling).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cooee_agent.atomic import replace_file
from cooee_agent.errors import CooeeError
from cooee_agent.leader.registry import REGISTRY_FILE, Registry
from cooee_agent.leader.registry.views import HostView
from cooee_agent.protocol.host_records import (
    HostInfo,
    HostRecordRules,
    SlotTuples,
    host_key,
    new_read_key,
    read_key_identity,
    seal_host_record,
)
from cooee_agent.protocol.keys import LeaderKeys, check_private_file, raw_public
from cooee_agent.protocol.records import TupleFields, now_text
from cooee_agent.protocol.schema import canonical

log = logging.getLogger(__name__)

READ_KEY_FILE = "dht-read-key.json"


@dataclass(frozen=True, slots=True)
class PublishSettings:
    """``lifetime_s``: how long a record is valid (so how long a revoked host's last record can
    be served); it is put again every ``republish_s``; the registry is looked at every
    ``scan_s``."""

    lifetime_s: int = 3600
    republish_s: float = 900.0
    scan_s: float = 2.0
    # Puts in flight at once: each waits on DHT round trips, not on this process, so a
    # cluster's 254 records go out in about 254 / 16 put times instead of 254.
    concurrent_puts: int = 16


class ReadKey:
    """The cluster's read key in ``dht-read-key.json`` (0600): the age secret, its generation,
    and the revoked host_ids it was made after. Read by the sealing thread, rotated by the
    publisher's: each attribute is replaced whole, never mutated."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / READ_KEY_FILE
        self.generation = 0
        self.revoked: frozenset[int] = frozenset()
        if self.path.exists():
            check_private_file(self.path)
            try:
                stored = json.loads(self.path.read_text(encoding="utf-8"))
                self.secret = str(stored["secret"])
                read_key_identity(self.secret)
                self.generation = int(stored["generation"])
                self.revoked = frozenset(int(h) for h in stored["revoked"])
            except (ValueError, KeyError, TypeError) as error:
                raise CooeeError(f"{self.path} is not a read key file: {error}") from error
        else:
            self.secret = str(new_read_key())
            self._save()

    @property
    def recipient(self) -> str:
        return str(read_key_identity(self.secret).to_public())

    def rotate(self, revoked: frozenset[int]) -> None:
        self.secret, self.generation, self.revoked = (
            str(new_read_key()),
            self.generation + 1,
            revoked,
        )
        self._save()
        log.warning(
            "rotated the DHT read key to generation %d (%d host(s) revoked)",
            self.generation,
            len(revoked),
        )

    def _save(self) -> None:
        data = {"generation": self.generation, "revoked": sorted(self.revoked)}
        text = json.dumps({**data, "secret": self.secret}, sort_keys=True) + "\n"
        replace_file(self.path, text.encode("utf-8"), mode=0o600)


def leader_rules(keys: LeaderKeys, read_key: ReadKey) -> HostRecordRules:
    return HostRecordRules(trusted={raw_public(keys.signing)}, read_key=read_key.recipient)


def host_info(host: HostView, seq: int, issued_at: str) -> HostInfo | None:
    """A registry host as the record shows it; None for one that has no host_id yet."""
    if host.host_id is None or host.status not in ("active", "revoked"):
        return None
    return HostInfo(
        host_id=host.host_id,
        seq=seq,
        issued_at=issued_at,
        status=host.status,  # type: ignore[arg-type]
        hostname=host.hostname,
        mac=host.mac,
        agent_key=host.ed25519,
        slots=tuple(
            SlotTuples(
                slot=slot["slot"],
                gpu_id=slot["gpu_id"],
                token=slot["token"],
                tuples=tuple(
                    TupleFields(
                        gpu_id=agent["gpu_id"],
                        hostname=agent["hostname"],
                        mac=agent["mac"],
                        model=agent["model"],
                    )
                    for agent in host.agents
                    if agent["slot"] == slot["slot"]
                ),
            )
            for slot in host.slots
        ),
    )


def _digest(info: HostInfo) -> str:
    """What a record says, without its seq and time: equal digests need no new record."""
    value = info.to_dict()
    value.pop("seq")
    value.pop("issued_at")
    return hashlib.sha256(canonical(value)).hexdigest()


class HostRecordPublisher:
    """Puts host records for one Leader. ``put(key, value)`` stores in the DHT; ``reissue()``
    sends every active host its assignment again (after a rotation)."""

    def __init__(
        self,
        state_dir: Path,
        keys: LeaderKeys,
        read_key: ReadKey,
        put: Callable[[str, bytes], None],
        reissue: Callable[[], int],
        *,
        rules: HostRecordRules | None = None,
        settings: PublishSettings | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.keys = keys
        self.read_key = read_key
        self.settings = settings or PublishSettings()
        self._put = put
        self._reissue = reissue
        self._clock = clock or (lambda: datetime.now(UTC))
        self._seq = 0
        self._published: dict[int, tuple[str, float]] = {}  # host_id -> (digest, when)
        self._version: int | None = None
        # The rules the Leader's own DHT node applies: its read key follows each rotation.
        self.rules = rules or leader_rules(keys, read_key)

    def next_seq(self) -> int:
        """The Leader's clock in milliseconds, always rising: no counter to persist, and a
        restarted Leader's records still win over the ones it put before."""
        self._seq = max(self._seq + 1, int(self._clock().timestamp() * 1000))
        return self._seq

    def run(self, stop: threading.Event) -> None:
        with Registry(self.state_dir / REGISTRY_FILE) as registry:
            while not stop.is_set():
                try:
                    self.scan(registry)
                except Exception:  # a bad scan must not end the publishing
                    log.exception("publishing host records failed; trying again")
                stop.wait(self.settings.scan_s)

    def scan(self, registry: Registry) -> int:
        """Put every record that changed or is due; returns how many were put."""
        version = registry.data_version()
        now = time.monotonic()
        due = any(now - when >= self.settings.republish_s for _, when in self._published.values())
        if version == self._version and not due:
            return 0
        self._version = version
        hosts = registry.hosts()
        revoked = frozenset(h.host_id for h in hosts if h.status == "revoked" and h.host_id)
        rotated = not revoked <= self.read_key.revoked
        if rotated:
            self.read_key.rotate(revoked | self.read_key.revoked)
            self.rules.read_key = self.read_key.recipient
            self._published.clear()
        due_records = [r for r in (self._due(host, now) for host in hosts) if r is not None]
        put = self._put_all(due_records, now)
        if rotated:
            sent = self._reissue()
            log.info("sent %d active host(s) the new read key", sent)
        return put

    def _due(self, host: HostView, now: float) -> tuple[HostInfo, str, bytes] | None:
        """(the record, its digest, its sealed value) when ``host`` needs a put, else None."""
        moment = self._clock()
        info = host_info(host, 0, now_text(moment))
        if info is None:
            return None
        digest = _digest(info)
        last = self._published.get(info.host_id)
        if last is not None and last[0] == digest and now - last[1] < self.settings.republish_s:
            return None
        info = host_info(host, self.next_seq(), now_text(moment))
        assert info is not None
        value = seal_host_record(
            info,
            self.keys.signing,
            self.read_key.recipient,
            expires_at=moment + timedelta(seconds=self.settings.lifetime_s),
        )
        return info, digest, value

    def _put_all(self, due: list[tuple[HostInfo, str, bytes]], now: float) -> int:
        """Put the records, ``concurrent_puts`` at a time; returns how many were stored."""
        if not due:
            return 0

        def put_one(record: tuple[HostInfo, str, bytes]) -> bool:
            info, _, value = record
            try:
                self._put(host_key(info.host_id), value)
            except Exception as error:  # the DHT may have no peers yet: the next scan retries
                log.warning("could not put the record of host %d: %s", info.host_id, error)
                return False
            log.debug("put the record of host %d (seq %d)", info.host_id, info.seq)
            return True

        workers = max(1, min(self.settings.concurrent_puts, len(due)))
        with ThreadPoolExecutor(workers, thread_name_prefix="host-record-put") as pool:
            stored = list(pool.map(put_one, due))
        for (info, digest, _), ok in zip(due, stored, strict=True):
            if ok:
                self._published[info.host_id] = (digest, now)
        if not all(stored):
            self._version = None
        return sum(stored)


def reissuer(registrar: Any, publish: Callable[[str, bytes], None]) -> Callable[[], int]:
    """Seal each active host's assignment again (its stored enrolment, its tokens, the current
    read key) and publish it; returns how many were sent."""
    from cooee_agent.protocol.kinds import topic_of

    def reissue() -> int:
        sent = 0
        with Registry(registrar.state_dir / REGISTRY_FILE) as registry:
            active = registry.active_enrolments()
        seal = registrar.sealer(datetime.now(UTC))
        for entry in active:
            try:
                publish(topic_of("assignment"), seal(entry.record, entry.host_id, entry.tokens))
                sent += 1
            except Exception as error:
                log.warning("could not re-issue the assignment of %d: %s", entry.host_id, error)
        return sent

    return reissue
