"""Admission under attack, against a real registry file: a squatter cannot take a host a join
token was made for, first contact is bounded, calls are bounded per host, join tokens are kept
as salted hashes with uses and an expiry, and secrets sit in private files."""

from __future__ import annotations

import logging
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from enrolment_factory import agent_keys, record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cooee_agent.bus.memory import MemoryBus
from cooee_agent.config import checks
from cooee_agent.config.checks import InvalidValue
from cooee_agent.leader.calls import CALLS_FILE, OPEN_REASONS_PER_HOST, CallBook
from cooee_agent.leader.dispatch import Dispatcher, envelope_validator
from cooee_agent.leader.errors import RegistryError
from cooee_agent.leader.registrar import (
    JOIN_TOKENS_FILE,
    IngestResult,
    JoinTokensFileError,
    Registrar,
)
from cooee_agent.leader.registry import REGISTRY_FILE
from cooee_agent.leader.registry.admission import Limits
from cooee_agent.leader.registry.pending import key_fingerprint
from cooee_agent.protocol import b64
from cooee_agent.protocol.errors import RejectedError
from cooee_agent.protocol.keys import AgentKeys, LeaderKeys
from cooee_agent.protocol.kinds import TOPIC_AVAILABILITY, TOPIC_ENROL
from cooee_agent.protocol.records import EnrolmentRecord
from cooee_agent.protocol.schema import convert
from cooee_agent.protocol.sealing import seal_enrolment

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def enrol(
    leader: Registrar, keys: AgentKeys, host: int, now: datetime = NOW, **kwargs: object
) -> IngestResult:
    rec = record(keys, host=host, issued_at=now, **kwargs)
    return leader.ingest(seal_enrolment(rec, keys, leader.keys.bundle, sent_at=now), now=now)


def ed(keys: AgentKeys) -> str:
    """The agent's key as the registry pins it."""
    return b64.encode(keys.verify_key)


# -- 1. join-token squatting ---------------------------------------------------------------------


def test_a_valid_token_admits_the_real_host_over_a_squatter_held_pending(
    leader_dir: Path,
) -> None:
    with Registrar(leader_dir) as leader:
        _, token = leader.registry.create_join_token(now=NOW)
        squatter, real = agent_keys(), agent_keys()
        assert enrol(leader, squatter, 7).reason == "not-approved"
        assert enrol(leader, squatter, 7, now=NOW + timedelta(seconds=1)).reason == "not-approved"
        admitted = enrol(leader, real, 7, now=NOW + timedelta(seconds=2), join_token=token)
        assert admitted.accepted, admitted
        # The squatter's claim is named, so an operator is called about it.
        assert admitted.competing == (key_fingerprint(ed(squatter)),)
        (host,) = leader.registry.hosts()
        assert (host.status, host.ed25519, host.pending_keys) == ("active", ed(real), ())


def test_leader_list_shows_every_pending_key_and_approve_pins_the_chosen_one(
    leader_dir: Path,
) -> None:
    with Registrar(leader_dir) as leader:
        leader.registry.create_join_token(now=NOW)  # join tokens on
        first, second = agent_keys(), agent_keys()
        assert enrol(leader, first, 7).reason == "not-approved"
        later = enrol(leader, second, 7, now=NOW + timedelta(seconds=1))
        assert later.competing == (key_fingerprint(ed(first)),)
        (host,) = leader.registry.hosts()
        shown = [fingerprint for fingerprint, _ in host.pending_keys]
        assert shown == [key_fingerprint(ed(first)), key_fingerprint(ed(second))]
        assert [k["fingerprint"] for k in host.to_dict()["pending_keys"]] == shown
        # Two keys claim it: the operator must say which.
        with pytest.raises(RegistryError, match=r"2 keys claim .*--key"):
            leader.approve(host.hostname, now=NOW)
        approved = leader.approve(host.hostname, now=NOW, key=key_fingerprint(ed(first)))
        assert approved.ed25519 == ed(first)
        assert approved.key_fingerprint == key_fingerprint(ed(first))
        assert approved.pending_keys == ()


def test_a_competing_key_raises_a_call(leader_dir: Path, leader_keys: LeaderKeys) -> None:
    bus = MemoryBus()
    transport = bus.join("leader", validator=envelope_validator)
    agent = bus.join("agent")
    with Registrar(leader_dir) as leader, CallBook(leader_dir / CALLS_FILE) as book:
        _, token = leader.registry.create_join_token(now=NOW)
        service = Dispatcher(leader, transport, calls=book, clock=lambda: NOW)
        squatter, real = agent_keys(), agent_keys()
        for keys, extra in ((squatter, {}), (real, {"join_token": token})):
            rec = record(keys, host=7, issued_at=NOW, **extra)
            agent.publish(TOPIC_ENROL, seal_enrolment(rec, keys, leader_keys.bundle, sent_at=NOW))
            service.drain()
        reasons = {c.reason: c for c in book.calls()}
        assert key_fingerprint(ed(squatter)) in reasons["competing-keys"].detail
        service.close()


# -- 2 and 3. bounded first contact ---------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.integers(0, 60), max_size=4),
    st.lists(st.sampled_from(("new", "again", "resent")), min_size=1, max_size=8),
    st.integers(0, 6),
)
def test_a_batch_counts_its_admissions_as_enrolments_one_by_one_do(
    tmp_path_factory: pytest.TempPathFactory,
    earlier: list[int],
    arrivals: list[str],
    per_minute: int,
) -> None:
    """The admissions of the last minute are counted once a batch and then kept by the batch:
    the outcomes are those of the same enrolments applied one at a time."""
    from cooee_agent.protocol.keys import generate_leader_keys

    directory = tmp_path_factory.mktemp("keys")
    leader_keys = generate_leader_keys(directory)
    envelopes: list[tuple[datetime, bytes]] = []
    for seconds in earlier:  # hosts admitted that many seconds before the batch
        keys = agent_keys()
        at = NOW - timedelta(seconds=seconds)
        rec = record(keys, host=len(envelopes), issued_at=at)
        envelopes.append((at, seal_enrolment(rec, keys, leader_keys.bundle, sent_at=at)))
    batch = []
    known: list[AgentKeys] = []
    for arrival in arrivals:
        if arrival == "new" or not known:
            known.append(agent_keys())
        keys = known[-1]
        rec = record(keys, host=100 + len(known), issued_at=NOW)
        sealed = seal_enrolment(rec, keys, leader_keys.bundle, sent_at=NOW)
        batch.append(batch[-1] if arrival == "resent" and batch else sealed)
    outcomes = []
    for together in (True, False):
        state = tmp_path_factory.mktemp("state")
        limits = Limits(admissions_per_minute=per_minute + len(earlier) // 2)
        with Registrar(state, keys=leader_keys, limits=limits) as leader:
            for at, sealed in envelopes:
                leader.ingest(sealed, now=at)
            if together:
                results = leader.ingest_many(batch, now=NOW)
            else:
                results = [leader.ingest(sealed, now=NOW) for sealed in batch]
        outcomes.append([(r.reason, r.host_id) for r in results])
    assert outcomes[0] == outcomes[1]


def test_first_contact_admissions_are_bounded_per_minute_and_retried_later(
    leader_dir: Path, leader_keys: LeaderKeys
) -> None:
    with Registrar(leader_dir, limits=Limits(admissions_per_minute=5)) as leader:
        envelopes = []
        for n in range(8):
            keys = agent_keys()
            rec = record(keys, host=n, issued_at=NOW)
            envelopes.append(seal_enrolment(rec, keys, leader_keys.bundle, sent_at=NOW))
        results = leader.ingest_many(envelopes, now=NOW)
        assert [r.reason for r in results] == ["accepted"] * 5 + ["rate-limited"] * 3
        assert all(r.host_id is None for r in results[5:])
        assert len(leader.registry.hosts()) == 5
        # A refusal leaves no trace (not even the nonce): the agent's resend gets in later.
        later = NOW + timedelta(seconds=61)
        again = leader.ingest_many(envelopes[5:], now=later)
        assert [r.reason for r in again] == ["accepted"] * 3


def test_pending_hosts_hold_no_host_id_and_are_capped(leader_dir: Path) -> None:
    with Registrar(leader_dir, limits=Limits(max_pending=4)) as leader:
        leader.registry.create_join_token(now=NOW)
        reasons = [enrol(leader, agent_keys(), n).reason for n in range(10)]
        assert reasons == ["not-approved"] * 4 + ["pending-full"] * 6
        hosts = leader.registry.hosts()
        assert len(hosts) == 4
        assert {h.host_id for h in hosts} == {None}
        # A host with a valid token is admitted even when the pending rows are full.
        _, token = leader.registry.create_join_token(now=NOW)
        assert enrol(leader, agent_keys(), 99, join_token=token).accepted


def test_limit_refusals_are_reported_once_per_window(
    leader_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Registrar(leader_dir, limits=Limits(admissions_per_minute=1)) as leader:
        caplog.set_level(logging.DEBUG, logger="cooee_agent.leader.registrar")
        for n in range(6):
            enrol(leader, agent_keys(), n)
        assert [r.levelno for r in caplog.records if "rate-limited" in r.getMessage()] == [
            logging.DEBUG
        ] * 5
        first = leader.limit_report(NOW)
        assert first is not None and "5 rate-limited" in first
        for n in range(6, 9):
            enrol(leader, agent_keys(), n)
        assert leader.limit_report(NOW + timedelta(seconds=30)) is None  # within the window
        second = leader.limit_report(NOW + timedelta(seconds=61))
        assert second is not None and "3 rate-limited" in second
        assert leader.limit_report(NOW + timedelta(seconds=200)) is None  # nothing new


def test_forget_frees_a_revoked_hosts_id_after_the_grace_period(leader_dir: Path) -> None:
    with Registrar(leader_dir) as leader:
        first = enrol(leader, agent_keys(), 1)
        enrol(leader, agent_keys(), 2)
        with pytest.raises(RegistryError, match="revoke it first"):
            leader.registry.forget("0", now=NOW)
        leader.registry.revoke("0", now=NOW)
        with pytest.raises(RegistryError, match="can be forgotten from 2026-03-08"):
            leader.registry.forget("0", now=NOW + timedelta(days=6))
        forgotten = leader.registry.forget("0", now=NOW + timedelta(days=7))
        assert forgotten.host_id == first.host_id == 0
        assert leader.registry.check() == []
        later = NOW + timedelta(days=8)
        assert enrol(leader, agent_keys(), 3, now=later).host_id == 0


def test_a_host_cannot_open_more_than_a_bounded_number_of_calls(tmp_path: Path) -> None:
    with CallBook(tmp_path / CALLS_FILE) as book:
        for n in range(500):
            book.record_leader_call(
                hostname="gpu-node-07",
                mac="3cecef123456",
                host_id=None,
                severity="critical",
                reason=f"reason-{n}",
                detail="forged",
                now=NOW,
            )
        calls = book.calls()
        assert len(calls) == OPEN_REASONS_PER_HOST + 1
        overflow = next(c for c in calls if c.reason == "too-many-calls")
        assert overflow.count == 500 - OPEN_REASONS_PER_HOST
        assert overflow.detail.startswith("reason-499:")


# -- 5. join tokens and the files that hold secrets -----------------------------------------------


def test_join_tokens_are_stored_as_salted_hashes_and_used_once_by_default(
    leader_dir: Path,
) -> None:
    with Registrar(leader_dir) as leader:
        token_id, token = leader.registry.create_join_token(now=NOW)
        _, other = leader.registry.create_join_token(now=NOW)
        assert enrol(leader, agent_keys(), 1, join_token=token).accepted
        (used, unused) = leader.registry.list_join_tokens()
        assert (used.id, used.used, used.state(NOW)) == (token_id, 1, "spent")
        assert unused.state(NOW) == "live"
        assert enrol(leader, agent_keys(), 2, join_token=token).reason == "not-approved"
    data = b"".join(
        path.read_bytes() for path in leader_dir.iterdir() if path.name.startswith(REGISTRY_FILE)
    )
    assert token.encode() not in data and other.encode() not in data


def test_a_token_with_uses_an_expiry_or_revoked(leader_dir: Path) -> None:
    with Registrar(leader_dir) as leader:
        _, three = leader.registry.create_join_token(now=NOW, uses=3)
        assert [enrol(leader, agent_keys(), n, join_token=three).reason for n in range(4)] == [
            "accepted"
        ] * 3 + ["not-approved"]
        _, brief = leader.registry.create_join_token(
            now=NOW, uses=5, expires_at=NOW + timedelta(hours=1)
        )
        late = NOW + timedelta(hours=2)
        assert enrol(leader, agent_keys(), 10, now=late, join_token=brief).reason == (
            "not-approved"
        )
        revoked_id, revoked = leader.registry.create_join_token(now=NOW, uses=5)
        leader.registry.revoke_join_token(revoked_id, now=NOW)
        assert enrol(leader, agent_keys(), 11, join_token=revoked).reason == "not-approved"
        with pytest.raises(RegistryError, match="at least one use"):
            leader.registry.create_join_token(now=NOW, uses=0)


def test_registry_files_and_state_dir_are_made_private_whatever_existed(tmp_path: Path) -> None:
    state = tmp_path / "leader"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    (state / REGISTRY_FILE).touch(mode=0o644)
    (state / REGISTRY_FILE).chmod(0o644)
    from cooee_agent.leader.registry import Registry

    with Registry(state / REGISTRY_FILE), CallBook(state / CALLS_FILE):
        pass
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for path in state.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_join_tokens_file_readable_by_others_is_refused(leader_dir: Path) -> None:
    path = leader_dir / JOIN_TOKENS_FILE
    path.write_text("shared-token\n")
    path.chmod(0o644)
    with pytest.raises(JoinTokensFileError, match="chmod 600"):
        Registrar(leader_dir)
    path.chmod(0o600)
    with Registrar(leader_dir) as leader:
        assert enrol(leader, agent_keys(), 1, join_token="shared-token").accepted


@pytest.mark.parametrize("token", ["x" * 200, "tab\there", "line\nbreak", "nbsp\u00a0x", ""])
def test_the_agent_refuses_a_token_the_leader_would_refuse(token: str) -> None:
    with pytest.raises(InvalidValue):
        checks.join_token(token)
    value = record(agent_keys(), host=1).to_dict() | {"join_token": token}
    with pytest.raises(RejectedError):
        convert(value, EnrolmentRecord)


_RECORD = record(agent_keys(), host=1).to_dict()


@given(
    st.text(max_size=140)
    | st.text(alphabet=st.characters(max_codepoint=0x3000), min_size=120, max_size=135)
)
def test_agent_and_leader_agree_on_every_join_token(token: str) -> None:
    """What the agent would write, the Leader accepts; what the Leader accepts as it stands,
    the agent writes unchanged."""
    try:
        written: str | None = checks.join_token(token)
    except InvalidValue:
        written = None
    if written is not None:
        convert(_RECORD | {"join_token": written}, EnrolmentRecord)
    try:
        convert(_RECORD | {"join_token": token}, EnrolmentRecord)
    except RejectedError:
        return
    if token == token.strip():
        assert written == token


def test_a_config_holding_a_token_and_readable_by_others_is_refused(tmp_path: Path) -> None:
    from cooee_agent.config.load import load_config
    from cooee_agent.errors import ConfigError

    path = tmp_path / "config.toml"
    path.write_text('join_token = "secret-join"\n')
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="accessible by others"):
        load_config(path, env={})
    path.chmod(0o640)
    assert load_config(path, env={}).join_token == "secret-join"


# -- 6. two agents with one identity ---------------------------------------------------------------


def test_two_live_agents_with_one_key_are_called_out(
    leader_dir: Path, leader_keys: LeaderKeys
) -> None:
    from test_leader_dispatch import heartbeat

    bus = MemoryBus()
    transport = bus.join("leader", validator=envelope_validator)
    agent = bus.join("agent")
    with Registrar(leader_dir) as leader, CallBook(leader_dir / CALLS_FILE) as book:
        clock = [NOW]
        service = Dispatcher(leader, transport, calls=book, clock=lambda: clock[0])
        keys = agent_keys()
        assert enrol(leader, keys, 1).accepted
        # A clone continues the same counter: both send seq 10, 11, 12... a second apart.
        for n in range(10, 14):
            for _ in ("original", "clone"):
                clock[0] += timedelta(seconds=1)
                agent.publish(TOPIC_AVAILABILITY, heartbeat(keys, 0, n, clock[0]))
                service.drain()
        (called,) = [c for c in book.calls() if c.reason == "two-agents-one-key"]
        assert called.host_id == 0 and called.severity == "critical"
        service.close()


def test_a_single_agent_never_looks_like_two() -> None:
    from cooee_agent.leader.clones import CloneWatch

    watch = CloneWatch()
    assert not any(watch.applied(0, seq, float(seq)) for seq in range(100))
    # One restored backup (the counter went back once) is not two agents.
    assert not any(watch.applied(0, seq, 200.0 + seq) for seq in range(50, 120))


# -- the bounds on per-host records, each with its number -----------------------------------------


def test_the_keys_held_for_one_host_are_bounded(leader_dir: Path) -> None:
    from cooee_agent.leader.registry.pending import PENDING_KEYS_PER_HOST

    with Registrar(leader_dir) as leader:
        leader.registry.create_join_token(now=NOW)
        claimants = [agent_keys() for _ in range(PENDING_KEYS_PER_HOST + 3)]
        for n, keys in enumerate(claimants):
            enrol(leader, keys, 7, now=NOW + timedelta(seconds=n))
        (host,) = leader.registry.hosts()
        kept = [fingerprint for fingerprint, _ in host.pending_keys]
        assert kept == [key_fingerprint(ed(k)) for k in claimants[-PENDING_KEYS_PER_HOST:]]


def test_live_join_tokens_are_bounded(leader_dir: Path) -> None:
    from cooee_agent.leader.registry.join_tokens import MAX_LIVE_TOKENS

    with Registrar(leader_dir) as leader:
        for _ in range(MAX_LIVE_TOKENS):
            leader.registry.create_join_token(now=NOW)
        with pytest.raises(RegistryError, match=f"{MAX_LIVE_TOKENS} join tokens are live"):
            leader.registry.create_join_token(now=NOW)


def test_a_join_token_kept_in_clear_by_an_older_release_is_scrubbed(leader_dir: Path) -> None:
    import sqlite3

    with Registrar(leader_dir) as leader:
        enrol(leader, agent_keys(), 1, join_token="old-clear-token")
    db = sqlite3.connect(leader_dir / REGISTRY_FILE)
    with db:
        db.execute("UPDATE hosts SET record = json_set(record, '$.join_token', 'old-clear-token')")
    db.close()
    with Registrar(leader_dir) as leader:
        assert leader.registry.check() == []
    data = b"".join(p.read_bytes() for p in leader_dir.glob(REGISTRY_FILE + "*"))
    assert b"old-clear-token" not in data


def test_a_token_holder_over_the_minute_is_admitted_later_with_its_token_unspent(
    leader_dir: Path, leader_keys: LeaderKeys
) -> None:
    with Registrar(leader_dir, limits=Limits(admissions_per_minute=1)) as leader:
        _, token = leader.registry.create_join_token(now=NOW)
        assert enrol(leader, agent_keys(), 1, join_token=token).accepted
        _, second = leader.registry.create_join_token(now=NOW)
        keys = agent_keys()
        rec = record(keys, host=2, issued_at=NOW, join_token=second)
        envelope = seal_enrolment(rec, keys, leader_keys.bundle, sent_at=NOW)
        assert leader.ingest(envelope, now=NOW).reason == "rate-limited"
        assert [t.used for t in leader.registry.list_join_tokens()] == [1, 0]
        assert len(leader.registry.hosts()) == 1  # not even held pending
        assert leader.ingest(envelope, now=NOW + timedelta(seconds=61)).accepted
