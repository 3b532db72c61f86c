"""The Leader's host records: one per host after each assignment, the read key in every
assignment, and a revoke rotating the read key, re-publishing everything under the new one and
re-issuing every active host's assignment."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from enrolment_factory import agent_keys, record

from cooee_agent.identity import token as codec
from cooee_agent.leader.host_records import READ_KEY_FILE, HostRecordPublisher, ReadKey
from cooee_agent.leader.registrar import Registrar
from cooee_agent.leader.registry import REGISTRY_FILE, Registry
from cooee_agent.protocol.errors import RejectedError
from cooee_agent.protocol.host_records import (
    HostRecordRules,
    host_key,
    open_host_record,
    read_key_identity,
)
from cooee_agent.protocol.keys import AgentKeys, LeaderKeys
from cooee_agent.protocol.sealing import open_assignment, seal_enrolment


class Cluster:
    """A Registrar with a read key, and a publisher putting into a dict (the DHT's stand-in:
    the DHT itself is exercised by tests/bus/test_dht.py and tests/e2e/test_e2e_dht.py)."""

    def __init__(self, leader_dir: Path) -> None:
        self.registrar = Registrar(leader_dir)
        self.registrar.read_key = ReadKey(leader_dir)
        self.stored: dict[str, bytes] = {}
        self.reissued = 0
        self.publisher = HostRecordPublisher(
            leader_dir,
            self.registrar.keys,
            self.registrar.read_key,
            self.stored.__setitem__,
            self.reissue,
        )
        self.registry = Registry(leader_dir / REGISTRY_FILE)

    def reissue(self) -> int:
        self.reissued += 1
        return 0

    def enrol(self, keys: AgentKeys, host: int) -> int:
        now = datetime.now(UTC)
        rec = record(keys, host=host, issued_at=now, gpus=2)
        envelope = seal_enrolment(rec, keys, self.registrar.keys.bundle, sent_at=now)
        result = self.registrar.ingest(envelope, now=now)
        assert result.accepted, result
        assert result.host_id is not None and result.assignment_envelope is not None
        self.last_assignment = result.assignment_envelope
        return result.host_id

    def close(self) -> None:
        self.registry.close()
        self.registrar.close()


@pytest.fixture
def cluster(leader_dir: Path):  # type: ignore[no-untyped-def]
    value = Cluster(leader_dir)
    yield value
    value.close()


def test_each_assigned_host_gets_a_record_that_members_open(
    cluster: Cluster, leader_keys: LeaderKeys
) -> None:
    keys = agent_keys()
    host_id = cluster.enrol(keys, 1)
    assert cluster.publisher.scan(cluster.registry) == 1
    assignment = open_assignment(cluster.last_assignment, keys, leader_keys.bundle)
    assert assignment.has_read_key
    read_key = read_key_identity(assignment.read_key)
    rules = HostRecordRules(
        trusted={leader_keys.bundle.verify_key}, read_key=str(read_key.to_public())
    )
    info = open_host_record(
        rules.check(host_key(host_id), cluster.stored[host_key(host_id)]), [read_key]
    )
    assert (info.hostname, info.status) == ("node0001.lab", "active")
    assert [s.token for s in info.slots] == [
        codec.encode(1, host_id, 0),
        codec.encode(1, host_id, 1),
    ]
    assert all(len(s.tuples) == 1 for s in info.slots)
    # Nothing changed: nothing is put again before the republish is due.
    assert cluster.publisher.scan(cluster.registry) == 0


def test_the_read_key_file_is_private(cluster: Cluster, leader_dir: Path) -> None:
    mode = stat.S_IMODE((leader_dir / READ_KEY_FILE).stat().st_mode)
    assert mode == 0o600
    assert ReadKey(leader_dir).secret == cluster.registrar.read_key.secret


def test_a_revoke_rotates_the_read_key_and_the_revoked_host_cannot_open_new_records(
    cluster: Cluster, leader_keys: LeaderKeys
) -> None:
    kept_keys, revoked_keys = agent_keys(), agent_keys()
    kept = cluster.enrol(kept_keys, 1)
    revoked = cluster.enrol(revoked_keys, 2)
    revoked_assignment = open_assignment(cluster.last_assignment, revoked_keys, leader_keys.bundle)
    old_key = read_key_identity(revoked_assignment.read_key)
    cluster.publisher.scan(cluster.registry)
    first = dict(cluster.stored)

    cluster.registrar.registry.revoke(str(revoked))  # another connection, as `leader revoke`
    assert cluster.publisher.scan(cluster.registry) == 2
    assert cluster.reissued == 1
    assert cluster.registrar.read_key.generation == 1
    new_key = read_key_identity(cluster.registrar.read_key.secret)
    assert new_key.to_public() != old_key.to_public()

    rules = HostRecordRules(
        trusted={leader_keys.bundle.verify_key}, read_key=str(new_key.to_public())
    )
    for host_id in (kept, revoked):
        key = host_key(host_id)
        assert rules.select(key, [first[key], cluster.stored[key]]) == 1  # the new one wins
        with pytest.raises(RejectedError, match="another read key"):
            rules.check(key, first[key])  # the old one is refused by members
        record_ = rules.check(key, cluster.stored[key])
        with pytest.raises(RejectedError, match="does not open"):
            open_host_record(record_, [old_key])  # the revoked host's node is out
    tombstone = open_host_record(
        rules.check(host_key(revoked), cluster.stored[host_key(revoked)]), [new_key]
    )
    assert tombstone.status == "revoked"
    # The next assignment carries the new key.
    cluster.enrol(kept_keys, 1)
    reassigned = open_assignment(cluster.last_assignment, kept_keys, leader_keys.bundle)
    assert reassigned.read_key == cluster.registrar.read_key.secret


def test_sequence_numbers_keep_rising_across_a_restart(cluster: Cluster, leader_dir: Path) -> None:
    first = cluster.publisher.next_seq()
    again = HostRecordPublisher(
        leader_dir, cluster.registrar.keys, cluster.registrar.read_key, print, lambda: 0
    )
    assert again.next_seq() >= first
    assert again.next_seq() > again._seq - 1


def test_records_are_put_concurrently_and_a_failed_put_is_retried_at_the_next_scan(
    cluster: Cluster,
) -> None:
    import threading

    for host in range(1, 5):
        cluster.enrol(agent_keys(), host)
    # Each put waits until all four are in flight: one at a time, the barrier would break.
    together = threading.Barrier(4, timeout=10)
    failing = {"host": None}

    def put(key: str, value: bytes) -> None:
        together.wait()
        if failing["host"] is None:
            failing["host"] = key  # type: ignore[assignment]
            raise OSError("no DHT peers yet")
        cluster.stored[key] = value

    cluster.publisher._put = put  # the DHT stand-in, swapped for this test
    assert cluster.publisher.scan(cluster.registry) == 3
    assert failing["host"] not in cluster.stored
    together = threading.Barrier(1)
    assert cluster.publisher.scan(cluster.registry) == 1  # only the one that failed
    assert failing["host"] in cluster.stored and len(cluster.stored) == 4
