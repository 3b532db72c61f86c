"""host_id assignment: stable across re-enrolments and restarts, unique at scale and under
concurrency, exhausted explicitly; key changes held for an operator; revoked hosts refused."""

from __future__ import annotations

import multiprocessing
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from enrolment_factory import agent_keys, record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cooee_agent.identity import token as codec
from cooee_agent.leader.errors import HostIdExhausted, RegistryError
from cooee_agent.leader.registrar import Registrar
from cooee_agent.leader.registry import REGISTRY_FILE, Registry
from cooee_agent.leader.registry.admission import free_host_id
from cooee_agent.leader.registry.schema import open_registry
from cooee_agent.protocol.keys import AgentKeys, LeaderKeys, load_leader_keys
from cooee_agent.protocol.sealing import open_assignment, seal_enrolment

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def enrol(leader: Registrar, keys: AgentKeys, host: int, now: datetime = NOW, **kwargs):
    rec = record(keys, host=host, issued_at=now, **kwargs)
    return leader.ingest(seal_enrolment(rec, keys, leader.keys.bundle, sent_at=now), now=now)


def test_assignment_opens_at_the_agent_with_one_token_per_slot(
    leader_dir: Path, keys: AgentKeys, leader_keys: LeaderKeys
) -> None:
    with Registrar(leader_dir) as leader:
        result = enrol(leader, keys, 7, gpus=3)
    assert result.accepted and result.host_id == 0
    assignment = open_assignment(result.assignment_envelope, keys, leader_keys.bundle)
    assert assignment.host_id == 0
    assert [s.token for s in assignment.slots] == [codec.encode(1, 0, slot) for slot in range(3)]
    with pytest.raises(Exception, match=r"wrong-recipient"):
        open_assignment(result.assignment_envelope, agent_keys(), leader_keys.bundle)


def test_a_host_keeps_its_id_across_reenrolment_restart_and_changed_gpus(
    leader_dir: Path,
) -> None:
    hosts = {n: agent_keys() for n in range(5)}
    with Registrar(leader_dir) as leader:
        first = {n: enrol(leader, k, n).host_id for n, k in hosts.items()}
    assert sorted(first.values()) == [0, 1, 2, 3, 4]
    later = NOW + timedelta(hours=1)
    with Registrar(leader_dir) as leader:  # a Leader restart
        again = enrol(leader, hosts[3], 3, later, gpus=4, models=("qwen2:7b", "llama3:8b"))
        assert again.accepted and again.host_id == first[3]
        view = leader.registry.host(str(first[3]))
        assert len(view.slots) == 4 and len(view.agents) == 8
        assert {a["model"] for a in view.agents} == {"qwen2:7b", "llama3:8b"}
        fewer = enrol(leader, hosts[3], 3, later + timedelta(seconds=1), gpus=1, models=())
        assert fewer.host_id == first[3]
        assert leader.registry.host(str(first[3])).agents == ()


def test_a_returning_host_with_a_new_key_is_held_until_approved(leader_dir: Path) -> None:
    old, new = agent_keys(), agent_keys()
    with Registrar(leader_dir) as leader:
        host_id = enrol(leader, old, 1).host_id
        held = enrol(leader, new, 1, gpus=2)
        assert (held.accepted, held.reason, held.assignment_envelope) == (False, "pending", None)
        view = leader.registry.host("node0001.lab")
        assert view.key_change_pending and len(view.slots) == 1
        assert enrol(leader, old, 1, NOW + timedelta(seconds=1)).accepted  # old key still pinned
        assert leader.registry.host("node0001.lab").key_change_pending  # kept for the operator
        assert enrol(leader, agent_keys(), 2).accepted
        with pytest.raises(RegistryError, match="nothing pending"):
            leader.registry.approve("node0002.lab/02:00:00:00:00:02", now=NOW)
        approved = leader.registry.approve("node0001.lab", now=NOW)
        assert approved.host_id == host_id and len(approved.slots) == 2
        after = enrol(leader, new, 1, NOW + timedelta(seconds=3), gpus=2)
        assert after.accepted and after.host_id == host_id
        refused = enrol(leader, old, 1, NOW + timedelta(seconds=4))
        assert refused.reason == "pending"


def test_a_revoked_host_is_refused_and_its_id_never_reused(leader_dir: Path) -> None:
    keys = agent_keys()
    with Registrar(leader_dir) as leader:
        host_id = enrol(leader, keys, 1).host_id
        leader.registry.revoke(str(host_id))
        result = enrol(leader, keys, 1, NOW + timedelta(seconds=1))
        assert (result.accepted, result.reason) == (False, "revoked")
        assert enrol(leader, agent_keys(), 2).host_id == host_id + 1


def test_join_tokens_gate_new_hosts(leader_dir: Path) -> None:
    with Registrar(leader_dir, join_tokens={"s3cret-join"}) as leader:
        without = enrol(leader, agent_keys(), 1)
        assert (without.accepted, without.reason, without.host_id) == (False, "not-approved", None)
        assert enrol(leader, agent_keys(), 2, join_token="s3cret-join").host_id == 0
        approved = leader.registry.approve("node0001.lab", now=NOW)
        assert approved.host_id == 1 and approved.status == "active"


def test_2032_agents_on_254_hosts_are_assigned_unique_stable_tokens(leader_dir: Path) -> None:
    keys = {n: agent_keys() for n in range(254)}
    models = ("llama3:8b",)
    with Registrar(leader_dir) as leader:
        first = {n: enrol(leader, k, n, gpus=8, models=models) for n, k in keys.items()}
    assert all(r.accepted for r in first.values())
    tokens = [t.token for r in first.values() for t in r.tokens]
    assert len(tokens) == 2032 and len(set(tokens)) == 2032
    assert sorted(r.host_id for r in first.values()) == list(range(254))
    later = NOW + timedelta(minutes=1)
    with Registrar(leader_dir) as leader:
        second = {n: enrol(leader, k, n, later, gpus=8, models=models) for n, k in keys.items()}
        assert {n: r.tokens for n, r in second.items()} == {n: r.tokens for n, r in first.items()}
        agents = sum(len(h.agents) for h in leader.registry.hosts())
        assert agents == 2032
        assert leader.registry.check() == []


def test_an_older_registry_with_rows_per_agent_and_slot_opens_and_shows_the_record(
    leader_dir: Path,
) -> None:
    import sqlite3

    with Registrar(leader_dir) as leader:
        result = enrol(leader, agent_keys(), 1, gpus=2, models=("qwen2:7b", "llama3:8b"))
        shown = leader.registry.hosts()[0]
    # The tables older releases kept, with rows that disagree with the record: never read.
    db = sqlite3.connect(leader_dir / REGISTRY_FILE)
    with db:
        db.execute(
            "CREATE TABLE agents (host_row INTEGER, key TEXT, slot INTEGER, model TEXT,"
            " gpu_id TEXT, PRIMARY KEY (host_row, key))"
        )
        db.execute("INSERT INTO agents VALUES (1, 'stale', 0, 'gone:1b', 'gpu-x')")
        db.execute(
            "CREATE TABLE slots (host_row INTEGER, slot INTEGER, gpu_id TEXT, vendor TEXT,"
            " name TEXT, token TEXT UNIQUE, PRIMARY KEY (host_row, slot))"
        )
        db.execute("INSERT INTO slots VALUES (1, 5, 'gpu-x', 'amd', 'stale', 'ZZZZZ')")
    db.close()
    with Registrar(leader_dir) as leader:
        again = leader.registry.hosts()[0]
        assert (again.agents, again.slots) == (shown.agents, shown.slots)
        assert [(a["slot"], a["model"]) for a in shown.agents] == [
            (0, "llama3:8b"),
            (0, "qwen2:7b"),
            (1, "llama3:8b"),
            (1, "qwen2:7b"),
        ]
        assert [(s["slot"], s["token"]) for s in shown.slots] == [
            (t.slot, t.token) for t in result.tokens
        ]
        assert [s["token"] for s in shown.slots] == [codec.encode(1, 0, 0), codec.encode(1, 0, 1)]
        assert leader.registry.check() == []
    db = sqlite3.connect(leader_dir / REGISTRY_FILE)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    db.close()
    assert not {"agents", "slots"} & tables


def test_a_stored_record_that_no_longer_passes_is_named_by_the_check(leader_dir: Path) -> None:
    import sqlite3

    with Registrar(leader_dir) as leader:
        enrol(leader, agent_keys(), 1)
    db = sqlite3.connect(leader_dir / REGISTRY_FILE)
    with db:
        db.execute("UPDATE hosts SET record = json_set(record, '$.agents[0].key', 'f00d')")
    db.close()
    with Registrar(leader_dir) as leader:
        (problem,) = leader.registry.check()
    assert problem.startswith("the record of host_id 0 is refused") and "agents[0].key" in problem


def test_the_1025th_host_is_told_the_host_id_space_is_exhausted(tmp_path: Path) -> None:
    keys = agent_keys()
    with Registry(tmp_path / REGISTRY_FILE) as registry:
        for n in range(1024):
            rec = record(keys, host=n, models=())
            assert registry.enrol(rec, now=NOW, nonce_expires_at=0).host_id == n
        last = record(keys, host=1024, models=())
        outcome = registry.enrol(last, now=NOW, nonce_expires_at=0)
        assert outcome.reason == "exhausted"
        assert "host_id space exhausted" in outcome.detail
        assert len(registry.hosts()) == 1024
        # Revoked hosts keep their ids, so revoking frees nothing.
        registry.revoke("0")
        assert registry.enrol(last, now=NOW, nonce_expires_at=0).reason == "exhausted"


def _ingest_many(leader_dir: str, envelopes: list[bytes], now: datetime) -> list[int | None]:
    with Registrar(Path(leader_dir)) as leader:
        return [leader.ingest(e, now=now).host_id for e in envelopes]


def test_concurrent_ingesters_assign_unique_ids(leader_dir: Path) -> None:
    bundle = load_leader_keys(leader_dir).bundle
    batches = []
    for worker in range(4):
        batch = []
        for n in range(worker * 40, worker * 40 + 40):
            keys = agent_keys()
            rec = record(keys, host=n, issued_at=NOW)
            batch.append(seal_enrolment(rec, keys, bundle, sent_at=NOW))
        batches.append(batch)
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        results = pool.starmap(_ingest_many, [(str(leader_dir), b, NOW) for b in batches])
    ids = [host_id for batch in results for host_id in batch]
    assert None not in ids
    assert sorted(ids) == list(range(160))


def test_a_registry_made_before_the_heartbeat_counters_gains_them(leader_dir: Path) -> None:
    import sqlite3

    from cooee_agent.leader.registry import schema as module

    path = leader_dir / "old.sqlite3"
    old_schema = module.SCHEMA.replace(
        ",\n    heard INTEGER NOT NULL DEFAULT 0,\n    missed INTEGER NOT NULL DEFAULT 0", ""
    )
    assert old_schema != module.SCHEMA
    with sqlite3.connect(path) as db:
        db.executescript(old_schema)
    with Registry(path) as registry:
        assert registry.hosts() == []
    with sqlite3.connect(path) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(presence)")}
    assert {"heard", "missed"} <= columns


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    taken=st.sets(st.integers(0, 1023), max_size=40) | st.just(set(range(1024))),
    pending=st.integers(0, 3),
    start=st.integers(0, 1023),
)
def test_the_free_host_id_is_the_lowest_never_given(
    tmp_path: Path, taken, pending: int, start: int
) -> None:
    db = open_registry(tmp_path / f"free-{uuid.uuid4().hex}.sqlite3", busy_timeout_s=1)
    rows = [(host_id, f"h{host_id}", "active") for host_id in taken]
    rows += [(None, f"pending{n}", "pending") for n in range(pending)]
    db.executemany(
        "INSERT INTO hosts (host_id, hostname, mac, status, first_seen)"
        " VALUES (?, ?, '020000000001', ?, 'now')",
        rows,
    )
    free = [host_id for host_id in range(1024) if host_id not in taken]
    if free:
        assert free_host_id(db) == free[0]
    else:
        with pytest.raises(HostIdExhausted):
            free_host_id(db)
    # Searching from ``start`` (every id below it taken, as a batch knows): the lowest free id
    # from there.
    db.executemany(
        "INSERT INTO hosts (host_id, hostname, mac, status, first_seen)"
        " VALUES (?, ?, '020000000002', 'active', 'now')",
        [(host_id, f"below{host_id}") for host_id in range(start) if host_id not in taken],
    )
    above = [host_id for host_id in free if host_id >= start]
    if above:
        assert free_host_id(db, start) == above[0]
    else:
        with pytest.raises(HostIdExhausted):
            free_host_id(db, start)
    db.close()


def test_one_batch_fills_the_gaps_lowest_first_then_counts_on(leader_dir: Path) -> None:
    import sqlite3

    from cooee_agent.leader.registry.admission import Enrolment

    keys = [agent_keys() for _ in range(10)]
    with Registry(leader_dir / REGISTRY_FILE) as registry:
        for n in range(6):
            registry.enrol(record(keys[n], host=n), now=NOW, nonce_expires_at=0)
    db = sqlite3.connect(leader_dir / REGISTRY_FILE)
    with db:  # ids 2 and 4 free again, as after 'leader forget'
        rows = [r[0] for r in db.execute("SELECT row FROM hosts WHERE host_id IN (2, 4)")]
        for table in ("assignments", "presence", "pending_keys"):
            db.executemany(f"DELETE FROM {table} WHERE host_row = ?", [(r,) for r in rows])
        db.execute("DELETE FROM hosts WHERE host_id IN (2, 4)")
    db.close()
    with Registry(leader_dir / REGISTRY_FILE) as registry:
        outcomes = registry.enrol_batch(
            [Enrolment(record(keys[n], host=n), 0) for n in range(6, 10)], now=NOW
        )
        assert [o.host_id for o in outcomes] == [2, 4, 6, 7]
        assert registry.check() == []


@pytest.mark.parametrize("join_token", [None, "a-join-token"])
@pytest.mark.parametrize("lax", [False, True])
def test_the_stored_record_is_its_canonical_text_without_the_join_token(
    leader_dir: Path, join_token: str | None, lax: bool
) -> None:
    import sqlite3

    import msgspec
    from enrolment_factory import craft

    from cooee_agent.protocol.envelope import sign_record
    from cooee_agent.protocol.schema import canonical

    keys = agent_keys()
    rec = record(keys, host=3, gpus=2, join_token=join_token, issued_at=NOW)
    signed = canonical(sign_record(rec, keys.signing))
    if lax:  # the same record, signed the same, sent as laxer JSON
        signed = signed.replace(b'{"record":', b'{ "record":', 1)
    with Registrar(leader_dir) as leader:
        result = leader.ingest(
            craft(signed, keys.signing, leader.keys.bundle, sent_at=NOW), now=NOW
        )
        assert result.accepted, result
    db = sqlite3.connect(leader_dir / REGISTRY_FILE)
    (stored,) = db.execute("SELECT record FROM hosts").fetchone()
    db.close()
    assert stored == canonical(msgspec.structs.replace(rec, join_token=None)).decode("utf-8")


def test_a_new_host_row_is_written_as_applying_its_record_writes_it(leader_dir: Path) -> None:
    """A host admitted on first contact is inserted with its record in one statement: applying
    the record to that row again changes nothing."""
    import sqlite3

    from cooee_agent.leader.registry.admission import apply_record
    from cooee_agent.protocol.schema import canonical

    keys = agent_keys()
    rec = record(keys, host=5, gpus=3, models=("llama3:8b", "qwen2.5:32b"), issued_at=NOW)
    with Registrar(leader_dir) as leader:
        envelope = seal_enrolment(rec, keys, leader.keys.bundle, sent_at=NOW)
        result = leader.ingest(envelope, now=NOW)
        assert result.accepted, result
    db = sqlite3.connect(leader_dir / REGISTRY_FILE)
    db.row_factory = sqlite3.Row
    inserted = dict(db.execute("SELECT * FROM hosts").fetchone())
    document = canonical(rec).decode("utf-8")
    stamp = "2026-03-01T12:00:00Z"
    tokens = apply_record(db, inserted["row"], inserted["host_id"], rec, document, stamp)
    applied = dict(db.execute("SELECT * FROM hosts").fetchone())
    db.rollback()
    db.close()
    assert applied == inserted
    assert tokens == result.tokens
    assert inserted["record"] is not None and inserted["status"] == "active"
    assert (inserted["ed25519"], inserted["age"]) == (rec.agent_ed25519, rec.agent_age)


def test_a_host_keeps_the_assignments_of_its_latest_enrolments_for_resends(
    leader_dir: Path,
) -> None:
    from cooee_agent.leader.registry.admission import ASSIGNMENTS_KEPT

    keys = agent_keys()
    sent = []
    with Registrar(leader_dir) as leader:
        for minute in range(ASSIGNMENTS_KEPT + 2):
            at = NOW + timedelta(minutes=minute)
            rec = record(keys, host=9, issued_at=at)
            result = leader.ingest(
                seal_enrolment(rec, keys, leader.keys.bundle, sent_at=at), now=at
            )
            assert result.accepted, result
            sent.append((rec.nonce, result.assignment_envelope))
        kept = [leader.registry.stored_assignment(nonce, rec.agent_ed25519) for nonce, _ in sent]
    assert kept == [None, None] + [envelope for _, envelope in sent[2:]]
