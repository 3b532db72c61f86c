"""Record validation: round trips, every plain kind, and no input that crashes the checker."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest
from enrolment_factory import record
from hypothesis import given, settings
from hypothesis import strategies as st

from cooee_agent.protocol.errors import RejectedError
from cooee_agent.protocol.keys import AgentKeys
from cooee_agent.protocol.records import EnrolmentRecord, validate_record
from cooee_agent.protocol.sealing import open_plain, seal_plain

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
AVAILABILITY = {
    "schema": 1,
    "kind": "availability",
    "host_id": 3,
    "seq": 17,
    "issued_at": "2026-03-01T12:00:00Z",
    "interval_s": 30,
    "slots": [
        {
            "slot": 0,
            "token": "40C0R",
            "state": "available",
            "memory_total": 85520809984,
            "memory_free": None,
            "utilisation": 12,
            "models_installed": ["llama3:8b"],
            "models_loaded": [],
        }
    ],
}
INTERVENTION = {
    "schema": 1,
    "kind": "intervention",
    "nonce": "0" * 32,
    "issued_at": "2026-03-01T12:00:00Z",
    "host_id": None,
    "hostname": "node1",
    "severity": "critical",
    "reason": "host-id-exhausted",
    "detail": "the Leader has no host_id left",
}
LEAVING = {
    "schema": 1,
    "kind": "leaving",
    "host_id": 3,
    "seq": 18,
    "issued_at": "2026-03-01T12:00:00Z",
    "reason": "shutdown",
}


def test_an_enrolment_record_round_trips(keys: AgentKeys) -> None:
    rec = record(keys, gpus=3, models=("llama3:8b", "qwen2:7b"))
    assert EnrolmentRecord.from_dict(json.loads(json.dumps(rec.to_dict()))) == rec
    assert len(rec.agents) == 6 and [s.slot for s in rec.slots] == [0, 1, 2]


def test_a_cpu_only_host_has_slot_zero_named_cpu(keys: AgentKeys) -> None:
    rec = record(keys, gpus=0)
    assert [(s.slot, s.gpu_id, s.vendor) for s in rec.slots] == [(0, "cpu", "cpu")]
    assert rec.agents[0].tuple.gpu_id == "cpu"


@pytest.mark.parametrize("value", [AVAILABILITY, INTERVENTION, LEAVING])
def test_plain_records_seal_and_open(keys: AgentKeys, value: dict) -> None:
    envelope = seal_plain(value, keys.signing, keys.agent_id, sent_at=NOW)
    opened, sender = open_plain(envelope, now=NOW)
    assert (opened, sender) == (value, keys.verify_key)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"utilisation": 101}, "out of range"),
        ({"state": "asleep"}, "expected one of"),
        ({"token": "4001U"}, "does not match"),
        ({"memory_free": True}, "must be an integer"),
        ({"models_loaded": ["m"] * 65}, "65 items"),
    ],
)
def test_availability_slots_are_checked(change: dict, match: str) -> None:
    value = json.loads(json.dumps(AVAILABILITY))
    value["slots"][0].update(change)
    with pytest.raises(RejectedError, match=match):
        validate_record(value)


def test_intervention_detail_is_bounded_and_free_of_control_characters() -> None:
    for detail, match in (("x" * 1025, "at most 1024"), ("a\u2028b", "U\\+2028")):
        with pytest.raises(RejectedError, match=match):
            validate_record({**INTERVENTION, "detail": detail})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["enrolment", "assignment", "availability", "leaving"]), body=json_values
)
def test_arbitrary_json_is_refused_with_a_schema_reason_never_a_crash(kind: str, body) -> None:
    value = {"schema": 1, "kind": kind, **body} if isinstance(body, dict) else body
    try:
        if kind == "enrolment":
            EnrolmentRecord.from_dict(value)
        else:
            validate_record(value)
    except RejectedError as error:
        assert error.reason in ("schema", "key-mismatch")
    else:
        raise AssertionError(f"accepted {value!r}")


@given(st.tuples(*(st.text(max_size=40) for _ in range(4))))
def test_a_tuple_key_from_the_record_fields_is_the_identity_tuple_key(fields) -> None:
    # The Leader hashes the canonical encoding of a record's tuple fields; the identity package
    # defines the key over the canonical tuple JSON. They must never drift apart.
    from cooee_agent.identity.canonical import canonical_json, tuple_key
    from cooee_agent.protocol.records import TupleFields
    from cooee_agent.protocol.schema import canonical

    gpu_id, hostname, mac, model = fields
    tuple_fields = TupleFields(gpu_id=gpu_id, hostname=hostname, mac=mac, model=model)
    assert canonical(tuple_fields) == canonical_json(tuple_fields).encode("utf-8")
    assert hashlib.sha256(canonical(tuple_fields)).hexdigest() == tuple_key(tuple_fields)


@given(st.datetimes(datetime(1000, 1, 2), datetime(9999, 12, 30), timezones=st.timezones()))
def test_a_protocol_time_is_strftime_of_the_utc_moment_and_parses_back(moment: datetime) -> None:
    from cooee_agent.protocol.records import TIME_FORMAT, now_text, parse_time

    text = now_text(moment)
    assert text == moment.astimezone(UTC).strftime(TIME_FORMAT)
    assert parse_time(text) == moment.astimezone(UTC).replace(microsecond=0)


def _parse_time_by_fields(text: str) -> datetime:
    """What parse_time returned before it read times with fromisoformat, for ASCII digits."""
    import re

    match = re.fullmatch(
        r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z", text
    )
    if match is None:
        raise ValueError("form")
    year, month, day, hour, minute, second = map(int, match.groups())
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@given(
    st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z\Z")
    | st.text(max_size=24)
)
def test_a_protocol_time_parses_as_its_fields_name_it_or_is_refused(text: str) -> None:
    from cooee_agent.protocol.records import parse_time

    try:
        expected: datetime | str = _parse_time_by_fields(text)
    except ValueError:
        expected = "refused"
    try:
        got: datetime | str = parse_time(text)
    except ValueError:
        got = "refused"
    assert got == expected
    if isinstance(got, datetime):
        assert got.tzinfo is UTC


@pytest.mark.parametrize(
    "moment",
    [
        "\u0662\u0660\u0662\u0666-01-31T12:00:00Z",  # Arabic-Indic digits, which \d matched
        "2026-01-31T12:00:0\uff10Z",  # a full-width zero
    ],
)
def test_a_time_written_in_other_digits_is_refused(keys: AgentKeys, moment: str) -> None:
    from cooee_agent.protocol.records import FieldError, check_time, parse_time

    with pytest.raises(ValueError):
        parse_time(moment)
    with pytest.raises(FieldError, match="is not a valid UTC time"):
        check_time(moment)
    written = record(keys).to_dict() | {"issued_at": moment}
    with pytest.raises(RejectedError, match=r"issued_at: .* does not match"):
        EnrolmentRecord.from_dict(written)
