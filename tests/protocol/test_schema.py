"""Strict wire JSON: canonical bytes, forbidden characters, refusals naming field and rule."""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cooee_agent.protocol.errors import RejectedError
from cooee_agent.protocol.records import Availability, Intervention
from cooee_agent.protocol.schema import canonical, check_characters, convert, loads

FORBIDDEN = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=25,
)


@given(json_values)
def test_canonical_is_byte_for_byte_sorted_compact_json_dumps(value) -> None:
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical(value) == expected.encode("utf-8")


def _has_forbidden(value) -> bool:
    if isinstance(value, str):
        return any(unicodedata.category(char) in FORBIDDEN for char in value)
    if isinstance(value, dict):
        return any(_has_forbidden(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_forbidden(item) for item in value)
    return False


@given(json_values)
def test_a_forbidden_character_in_any_string_value_is_refused_and_only_then(value) -> None:
    try:
        check_characters(value)
    except RejectedError as error:
        assert _has_forbidden(value)
        assert error.reason == "schema" and "forbidden character U+" in error.detail
    else:
        assert not _has_forbidden(value)


def test_a_forbidden_character_is_reported_at_its_path() -> None:
    with pytest.raises(
        RejectedError, match=r"slots\[1\]\.name: holds the forbidden character U\+200B"
    ):
        check_characters({"slots": [{"name": "ok"}, {"name": "a\u200bb"}]})


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


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"host_id": 1024}, "host_id: 1024 is out of range 0..1023"),
        ({"host_id": "7"}, "host_id: must be an integer or null, got string"),
        ({"detail": ""}, "detail: is empty"),
        ({"severity": "loud"}, "severity: is 'loud', expected one of info, warning, critical"),
        ({"reason": "Bad Reason"}, "reason: 'Bad Reason' does not match [a-z0-9][a-z0-9-]*"),
        ({"issued_at": "2026-02-30T12:00:00Z"}, "is not a valid UTC time"),
        ({"hostname": "Node1"}, "is not canonical ('node1')"),
        ({"extra": 1}, "record: has unknown field(s) 'extra'"),
        ({"schema": 2}, "schema: must be 1, got 2"),
    ],
)
def test_each_refusal_names_the_field_and_the_rule(change: dict, message: str) -> None:
    with pytest.raises(RejectedError) as caught:
        convert({**INTERVENTION, **change}, Intervention)
    assert caught.value.reason == "schema"
    assert message in caught.value.detail


def test_a_missing_field_and_a_long_list_are_named() -> None:
    value = {k: v for k, v in INTERVENTION.items() if k != "nonce"}
    with pytest.raises(RejectedError, match=r"misses the field\(s\) nonce"):
        convert(value, Intervention)
    heartbeat = {
        "schema": 1,
        "kind": "availability",
        "host_id": 3,
        "seq": 1,
        "issued_at": "2026-03-01T12:00:00Z",
        "interval_s": 30,
        "slots": [{"slot": 0}] * 17,
    }
    with pytest.raises(RejectedError, match=r"slots: has 17 items, expected 1\.\.16"):
        convert(heartbeat, Availability)


def _outcome(data: bytes | str):
    try:
        return ("value", loads(data, "x"))
    except RejectedError as error:
        return ("refused", error.detail)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
        lambda children: (
            st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3)
        ),
        max_leaves=15,
    ),
    st.sampled_from(["canonical", "spaced", "duplicated"]),
)
def test_the_fast_parse_agrees_with_the_strict_one_on_every_input(value, spelling: str) -> None:
    if spelling == "canonical":
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    else:
        text = json.dumps(value, ensure_ascii=False)
        if spelling == "duplicated" and text.startswith("{") and text != "{}":
            text = '{"dup":1,"dup":1,' + text[1:]
    # The str path is the strict parser alone; bytes take the fast path first.
    assert _outcome(text.encode("utf-8")) == _outcome(text)


@pytest.mark.parametrize("digits", [17, 4301, 100_000])
def test_an_integer_longer_than_any_the_protocol_uses_is_refused_in_one_line(digits: int) -> None:
    for data in (b'{"seq":' + b"9" * digits + b"}", b'{"seq":-' + b"9" * digits + b"}"):
        with pytest.raises(RejectedError) as refused:
            loads(data, "envelope")
        assert "beyond the protocol's" in refused.value.detail
        assert len(refused.value.detail) < 200


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b'{"v": 1, "v": 1}', "envelope: has the key 'v' twice"),
        (b'{"v": 1.5}', "envelope: holds the non-integer number 1.5"),
        (b'{"v": NaN}', "envelope: holds NaN, which is not JSON"),
    ],
)
def test_a_strict_parse_refusal_names_what_was_parsed(data: bytes, said: str) -> None:
    with pytest.raises(RejectedError) as refused:
        loads(data, "envelope")
    assert refused.value.detail.startswith(said)
