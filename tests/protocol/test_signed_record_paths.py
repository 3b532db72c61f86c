"""A signed enrolment record opened on the canonical fast path and on the general path: the same
record, or the same refusal with the same words, for every input."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest
from enrolment_factory import agent_keys, record, signed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cooee_agent.protocol.envelope import open_signed_record, open_signed_record_as
from cooee_agent.protocol.errors import RejectedError
from cooee_agent.protocol.records import EnrolmentRecord, UsualEnrolment, usual_enrolment
from cooee_agent.protocol.schema import canonical

KEYS = agent_keys()
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
models = st.lists(
    st.sampled_from(("llama3:8b", "qwen2.5:32b", "mistral-nemo:12b", "gemma2:27b")),
    max_size=4,
    unique=True,
)
records = st.builds(
    lambda host, gpus, chosen: record(KEYS, host=host, gpus=gpus, models=tuple(chosen)),
    st.integers(0, 1023),
    st.integers(1, 8),
    models,
)
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.text(max_size=20)
    | st.sampled_from(("", "nvidia", "llama3:8b", "0" * 64, "2026-03-01T12:00:00Z", "\u2028"))
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


def general(data: bytes) -> tuple[Any, ...]:
    try:
        value, signer = open_signed_record(data)
        return ("accepted", EnrolmentRecord.from_dict(value), signer)
    except RejectedError as error:
        return ("refused", error.reason, str(error))


def fast(data: bytes) -> tuple[Any, ...]:
    try:
        opened = open_signed_record_as(data, EnrolmentRecord)
        return ("accepted", opened.record(), opened.signer)
    except RejectedError as error:
        return ("refused", error.reason, str(error))


def paths(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place inside a decoded JSON value, the value itself included."""
    found = [at]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*at, index))
    return found


def replaced(value: Any, at: tuple[Any, ...], new: Any) -> Any:
    if not at:
        return new
    changed = copy.deepcopy(value)
    holder = changed
    for step in at[:-1]:
        holder = holder[step]
    holder[at[-1]] = new
    return changed


@SETTINGS
@given(records)
def test_a_canonical_record_takes_the_fast_path_to_the_same_record(rec: EnrolmentRecord) -> None:
    data = signed(rec.to_dict(), KEYS.signing)
    opened = open_signed_record_as(data, EnrolmentRecord)
    assert opened.typed is not None  # decoded straight into its type
    assert fast(data) == general(data) == ("accepted", rec, KEYS.verify_key)


@SETTINGS
@given(records, st.data())
def test_a_changed_field_is_refused_or_taken_alike(
    rec: EnrolmentRecord, data: st.DataObject
) -> None:
    value = rec.to_dict()
    at = data.draw(st.sampled_from(paths(value)))
    changed = replaced(value, at, data.draw(json_values))
    wire = signed(changed, KEYS.signing)
    assert fast(wire) == general(wire)


@SETTINGS
@given(records, st.data())
def test_changed_bytes_are_refused_or_taken_alike(
    rec: EnrolmentRecord, data: st.DataObject
) -> None:
    wire = bytearray(signed(rec.to_dict(), KEYS.signing))
    edit = data.draw(st.sampled_from(("insert", "replace", "delete")))
    position = data.draw(st.integers(0, len(wire) - 1))
    if edit == "delete":
        del wire[position]
    else:
        chunk = data.draw(
            st.sampled_from((b" ", b"\\u0061", b"\xc3\xa9", b"\x00", b"1.0", b'"record":1,', b","))
            | st.binary(min_size=1, max_size=3)
        )
        wire[position : position + (edit == "replace")] = chunk
    assert fast(bytes(wire)) == general(bytes(wire))


# Values an agent's field may be given that are near what it should be: another field's value,
# a value out of its pattern or bounds by one character, and other types.
def _near_misses(value: dict[str, Any]) -> list[Any]:
    agent = value["agents"][0]
    key, fields = agent["key"], agent["tuple"]
    return [
        *fields.values(),
        *(slot["gpu_id"] for slot in value["slots"]),
        key,
        key.upper(),
        key[:-1],
        key + "0",
        key[:-1] + "g",
        fields["mac"].upper(),
        fields["mac"][:-1],
        "02:00:00:00:00:01",
        fields["hostname"].upper(),
        "a" * 254,
        "x" * 256,
        "",
        " ",
        "GPU-0",
        "cpu",
        -1,
        0,
        1,
        15,
        16,
        True,
        None,
        [],
    ]


_AGENT_FIELDS = (
    ("slot",),
    ("key",),
    ("tuple", "gpu_id"),
    ("tuple", "hostname"),
    ("tuple", "mac"),
    ("tuple", "model"),
)


@SETTINGS
@given(records, st.data())
def test_an_agent_changed_near_its_rules_is_refused_or_taken_alike(
    rec: EnrolmentRecord, data: st.DataObject
) -> None:
    """The Leader decodes agents without their patterns when each names its host and slot:
    any other agent, however near, gets the refusal the strict decode gives."""
    value = rec.to_dict()
    if not value["agents"]:
        return
    misses = _near_misses(value)
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.integers(0, len(value["agents"]) - 1))
        at = ("agents", index, *data.draw(st.sampled_from(_AGENT_FIELDS)))
        value = replaced(value, at, data.draw(st.sampled_from(misses)))
    wire = signed(value, KEYS.signing)
    assert fast(wire) == general(wire)


def test_the_usual_form_of_an_enrolment_differs_from_it_only_in_its_agents() -> None:
    usual = {f.name: f for f in msgspec.structs.fields(UsualEnrolment)}
    strict = {f.name: f for f in msgspec.structs.fields(EnrolmentRecord)}
    assert usual.keys() == strict.keys()
    assert [name for name in strict if usual[name] != strict[name]] == ["agents"]


def test_a_usual_record_made_from_its_usual_form_is_the_record() -> None:
    rec = record(KEYS, gpus=8, models=("llama3:8b", "qwen2.5:32b", "gemma2:27b", "phi3:3.8b"))
    usual = msgspec.json.decode(canonical(rec), type=UsualEnrolment)
    assert usual_enrolment(usual) == rec
    strange = canonical(rec).replace(
        rec.host.mac.encode(), b"0" * 12, 2
    )  # two agents, not the host
    assert usual_enrolment(msgspec.json.decode(strange, type=UsualEnrolment)) is None


def test_a_duplicate_key_escape_or_spacing_leaves_the_fast_path_with_its_refusal() -> None:
    wire = signed(record(KEYS).to_dict(), KEYS.signing)
    duplicated = wire.replace(b'"schema":1', b'"schema":1,"schema":1', 1)
    escaped = wire.replace(b'"kind":"enrolment"', b'"kind":"enrolm\\u0065nt"', 1)
    spaced = wire.replace(b'{"record":', b'{ "record":', 1)
    assert open_signed_record_as(escaped, EnrolmentRecord).typed is None
    assert open_signed_record_as(spaced, EnrolmentRecord).typed is None
    assert fast(duplicated) == general(duplicated)
    assert fast(duplicated)[:2] == ("refused", "schema") and "twice" in fast(duplicated)[2]
    # An escape is lax JSON, not a different record: both paths take it, signature and all.
    assert fast(escaped) == general(escaped) == ("accepted", record_of(escaped), KEYS.verify_key)
    assert fast(spaced)[0] == "accepted"


def test_a_bad_signature_is_named_on_the_fast_path() -> None:
    wire = signed(record(KEYS).to_dict(), agent_keys().signing)
    forged = wire.replace(
        wire[-45:-2], signed(record(KEYS).to_dict(), KEYS.signing)[-45:-2]
    )  # claims KEYS as signer, signed by another key
    assert open_signed_record_as(wire, EnrolmentRecord).typed is not None
    assert (
        fast(forged)
        == general(forged)
        == (
            "refused",
            "bad-signature",
            "bad-signature: the record signature does not verify",
        )
    )


def record_of(data: bytes) -> EnrolmentRecord:
    value, _ = open_signed_record(data)
    return EnrolmentRecord.from_dict(value)


def _agent_field(name: str, value: Any):
    return lambda r: r["agents"][0]["tuple"].update({name: value})


@pytest.mark.parametrize(
    ("change", "reason", "named"),
    [
        # Well typed, so the fast decode takes them; the record's own rules refuse them.
        (lambda r: r["agents"][0].update(key="0" * 64), "key-mismatch", "SHA-256"),
        (_agent_field("model", "Llama3:8B"), "schema", "not canonical"),
        (lambda r: r["agents"][0].update(slot=7), "schema", "not among the record's slots"),
        (lambda r: r["slots"].append(dict(r["slots"][0])), "schema", "names a slot twice"),
        (_agent_field("hostname", "other.example"), "key-mismatch", "another host"),
        # Characters no record string may hold, in fields of any text.
        (lambda r: r["host"].update(os_release="Debian\u2028 12"), "schema", "U+2028"),
        (lambda r: r["host"].update(kernel="6.1\x07"), "schema", "U+0007"),
        (lambda r: r["slots"][0].update(name="H200\u200b"), "schema", "U+200B"),
    ],
)
def test_what_only_the_record_rules_refuse_is_refused_on_both_paths(
    change: Any, reason: str, named: str
) -> None:
    value = record(KEYS, gpus=2).to_dict()
    change(value)
    wire = signed(value, KEYS.signing)
    assert fast(wire) == general(wire)
    assert fast(wire)[:2] == ("refused", reason) and named in fast(wire)[2]
