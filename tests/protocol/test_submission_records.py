"""The PR, DR, receipt and decision record types: any text round-trips through a blob, and
malformed records are refused with reason ``schema`` naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cooee_agent.agent.submitting import dr_record, pr_record
from cooee_agent.protocol.errors import RejectedError
from cooee_agent.protocol.records import validate_record
from cooee_agent.protocol.submissions import (
    MAX_BLOB_CHARS,
    MAX_DR_ADDRESSES,
    blob,
    blob_bytes,
    blob_text,
    submission_from_dict,
)

ADDRESS = "ucxl://any:admin@SLURP:context/#/docs/x.md"


def a_pr(**changes: Any) -> dict[str, Any]:
    return {**pr_record(title="t", address=ADDRESS, change=b"x", form="diff"), **changes}


def a_dr(**changes: Any) -> dict[str, Any]:
    value = dr_record(title="t", status="proposed", context="c", decision="d")
    return {**value, **changes}


@given(st.text())
def test_any_text_round_trips_through_a_blob(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return  # lone surrogates are not text a file can hold
    assert blob_text(blob(value)) == value


@given(st.binary(max_size=512))
def test_any_bytes_round_trip_and_a_diff_is_carried_exactly(data: bytes) -> None:
    assert blob_bytes(blob(data)) == data
    if data:
        record = submission_from_dict(a_pr(change=blob(data)))
        assert blob_bytes(record.change) == data  # type: ignore[union-attr]


@given(st.dictionaries(st.text(max_size=8), st.text(max_size=8) | st.integers(), max_size=6))
def test_arbitrary_objects_are_refused_with_schema(value: dict[str, Any]) -> None:
    with pytest.raises(RejectedError) as refused:
        submission_from_dict({**value, "schema": 1, "kind": "pr"})
    assert refused.value.reason == "schema"


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (a_pr(address="not-an-address"), "address"),
        (a_pr(change=""), "change"),
        (a_pr(change="AB=="), "change"),  # padded: not the canonical spelling
        (a_pr(description=blob(b"\xff\xfe")), "description"),
        (a_pr(change_form="patch"), "change_form"),
        (a_pr(title=""), "title"),
        (a_pr(title="x" * 256), "title"),
        (a_pr(change="A" * (MAX_BLOB_CHARS + 1)), "change"),
        (a_pr(extra=1), "extra"),
        (a_dr(status="maybe"), "status"),
        (a_dr(context=blob("   ")), "context"),
        (a_dr(addresses=[ADDRESS, ADDRESS]), "addresses"),
        (a_dr(addresses=[f"{ADDRESS}{i}" for i in range(MAX_DR_ADDRESSES + 1)]), "addresses"),
        (a_dr(supersedes="nope"), "supersedes"),
    ],
)
def test_bad_fields_are_named(record: dict[str, Any], field: str) -> None:
    with pytest.raises(RejectedError) as refused:
        validate_record(record)
    assert refused.value.reason == "schema" and field in refused.value.detail


def test_a_dr_may_not_supersede_itself() -> None:
    value = a_dr()
    with pytest.raises(RejectedError, match="supersedes"):
        validate_record({**value, "supersedes": value["nonce"]})


def test_a_receipt_has_an_audit_entry_exactly_when_received() -> None:
    receipt = {
        "schema": 1, "kind": "receipt", "nonce": "0" * 32, "issued_at": "2026-01-31T12:00:00Z",
        "agent_key": "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg", "submission": "1" * 32,
        "submission_kind": "pr", "digest": "a" * 64, "outcome": "refused", "reason": "revoked",
        "detail": "gone", "audit_seq": 3,
    }  # fmt: skip
    with pytest.raises(RejectedError, match="audit_seq"):
        validate_record(receipt)
    validate_record({**receipt, "audit_seq": None})
