"""UCXL addresses: exact round-trip, and errors that name the wrong component."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cooee_agent.errors import AddressError
from cooee_agent.identity import ucxl


def test_enrol_address_parses() -> None:
    address = ucxl.parse("ucxl://any:admin@COOEE:enrol/#/agentid/42")
    assert address == ucxl.Address("any", "admin", "COOEE", "enrol", "#", "agentid/42")
    assert str(address) == "ucxl://any:admin@COOEE:enrol/#/agentid/42"
    assert ucxl.enrol_address("42") == address


@pytest.mark.parametrize(
    "text",
    [
        "ucxl://any:admin@COOEE:enrol/#/agentid/42",
        "ucxl://agent-7:worker@chorus:build/*^/src/main.go",
        "ucxl://a:b@c:d/*~",
        "ucxl://a:b@c:d/*~3/x",
        "ucxl://a:b@c:d/~~2/x",
        "ucxl://a:b@c:d/^^10",
        "ucxl://a:b@c:d/2026-11-25T16:00:00Z/notes.md",
        "ucxl://a:b@c:d/2026-11-25T16:00:00.123+01:00",
    ],
)
def test_round_trip_is_exact(text: str) -> None:
    assert str(ucxl.parse(text)) == text


@pytest.mark.parametrize(
    ("text", "component"),
    [
        ("http://a:b@c:d/#", "does not start with"),
        ("ucxl://a:b@c:d", "no temporal segment"),
        ("ucxl://ab@c:d/#", "between agent and role"),
        ("ucxl://a:b@cd/#", "between project and task"),
        ("ucxl://a:bc:d/#", "no '@'"),
        ("ucxl://:b@c:d/#", "agent is empty"),
        ("ucxl://a b:r@c:d/#", "agent 'a b'"),
        ("ucxl://a:r!@c:d/#", "role 'r!'"),
        ("ucxl://a:r@pro ject:d/#", "project"),
        ("ucxl://a:r@p:t?/#", "task"),
        ("ucxl://a:r@p:t//x", "temporal segment is empty"),
        ("ucxl://a:r@p:t/now/x", "temporal segment 'now'"),
        ("ucxl://a:r@p:t/~~-1", "temporal segment"),
        ("ucxl://a:r@p:t/2026-02-30T00:00:00Z", "not a valid time"),
        ("ucxl://a:r@p:t/2026-11-25T16:00:00", "temporal segment"),  # no zone
        ("ucxl://a:r@p:t/#/a b", "path 'a b'"),
        ("ucxl://a:r@p:t/#/a//b", "empty segment"),
        ("ucxl://a:r@p:t/#/", "empty path"),
    ],
)
def test_errors_name_the_component(text: str, component: str) -> None:
    with pytest.raises(AddressError, match=component.replace("?", r"\?")):
        ucxl.parse(text)


name = st.text(alphabet="abcXYZ019_-", min_size=1, max_size=12)
temporal = st.one_of(
    st.sampled_from(["#", "*^", "*~"]),
    st.builds(lambda p, n: f"{p}{n}", st.sampled_from(["*~", "~~", "^^"]), st.integers(0, 10**6)),
)
path = st.lists(st.text(alphabet="abz09_.-", min_size=1, max_size=8), max_size=4).map("/".join)


@given(name, name, name, name, temporal, path)
def test_format_then_parse_round_trips(
    agent: str, role: str, project: str, task: str, when: str, where: str
) -> None:
    address = ucxl.Address(agent, role, project, task, when, where)
    text = str(address)
    assert ucxl.parse(text) == address
    assert str(ucxl.parse(text)) == text


@given(st.text(max_size=60))
def test_arbitrary_text_parses_exactly_or_raises_address_error(text: str) -> None:
    try:
        address = ucxl.parse(text)
    except AddressError:
        return
    assert str(address) == text
