"""An envelope's address made and read back: the short paths (the address up to its agent id,
known per kind) against the UCXL parser and formatter they stand in for, for every input."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cooee_agent.errors import AddressError
from cooee_agent.identity import ucxl
from cooee_agent.protocol.kinds import KINDS
from cooee_agent.protocol.sealing import _address, _agent_id_of, address_for

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
AGENT_IDS = st.text(CROCKFORD, min_size=10, max_size=10)
# Near an agent id: other lengths, lower case, letters Crockford leaves out, path characters.
NEAR_IDS = AGENT_IDS | st.text(CROCKFORD + "abcilou/._-I", min_size=0, max_size=12)


def parsed_agent_id(address: str) -> str:
    """What _agent_id_of answered before its short path: the parser's reading."""
    path = ucxl.parse(address).path
    return path.removeprefix("agentid/") if path.startswith("agentid/") else ""


@given(st.sampled_from(sorted(KINDS)), AGENT_IDS)
def test_an_address_is_the_one_the_ucxl_formatter_makes(kind: str, agent_id: str) -> None:
    made = address_for(kind, agent_id)
    assert made == _address(kind, agent_id)
    assert str(ucxl.parse(made)) == made
    assert _agent_id_of(made) == agent_id


@given(
    st.sampled_from([*(_address(kind, "0" * 10)[:-10] for kind in KINDS), "ucxl://a:b@C:d/#/"]),
    NEAR_IDS,
    st.sampled_from(["", "/x", "?", "agentid/"]),
)
def test_any_parsable_address_yields_the_id_the_parser_reads(
    head: str, agent_id: str, tail: str
) -> None:
    address = head + agent_id + tail
    try:
        expected = parsed_agent_id(address)
    except AddressError:
        return  # never reaches _agent_id_of: an envelope's address is parsed when it is read
    assert _agent_id_of(address) == expected


@given(st.sampled_from(sorted(KINDS)), NEAR_IDS)
def test_an_address_for_a_malformed_id_is_refused_as_the_formatter_refuses_it(
    kind: str, agent_id: str
) -> None:
    try:
        expected: str | Exception = _address(kind, agent_id)
    except AddressError as error:
        expected = error
    try:
        got: str | Exception = address_for(kind, agent_id)
    except AddressError as error:
        got = error
    if isinstance(expected, Exception):
        assert isinstance(got, AddressError) and str(got) == str(expected)
    else:
        assert got == expected
