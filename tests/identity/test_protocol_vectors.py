"""The identity vectors published in docs/PROTOCOL.md hold for this implementation."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from cooee_agent.errors import AddressError, IdentityError, TokenError
from cooee_agent.identity import canonical, token, ucxl

Vectors = Callable[[str], list[str]]


def test_token_vectors(protocol_vectors: Vectors) -> None:
    lines = protocol_vectors("token")
    assert len(lines) >= 5
    for line in lines:
        version, host_id, slot, reserved, text = line.split()
        assert token.encode(int(version), int(host_id), int(slot), int(reserved)) == text
        assert token.decode(text) == token.Token(
            int(version), int(host_id), int(slot), int(reserved)
        )


def test_token_decode_vectors(protocol_vectors: Vectors) -> None:
    for line in protocol_vectors("token-decode"):
        given, expected = line.split(" -> ")
        if expected.startswith("error: "):
            with pytest.raises(TokenError, match=expected.removeprefix("error: ")):
                token.decode(given)
        else:
            assert token.decode(given).text == expected


def test_tuple_vectors(protocol_vectors: Vectors) -> None:
    lines = protocol_vectors("tuple")
    assert len(lines) >= 4
    for line in lines:
        vector = json.loads(line)
        agent = canonical.make_tuple(*vector["input"])
        assert agent.canonical_json() == vector["canonical"]
        assert agent.key == vector["key"]
        assert agent.short_key == vector["short"]


def test_tuple_rejection_vectors(protocol_vectors: Vectors) -> None:
    normalisers = {
        "mac": canonical.normalise_mac,
        "model": canonical.normalise_model,
        "hostname": canonical.normalise_hostname,
        "gpu_id": canonical.normalise_gpu_id,
    }
    for line in protocol_vectors("tuple-reject"):
        left, fault = line.split(" -> ")
        field, value = left.split(" ", 1)
        with pytest.raises(IdentityError, match=fault):
            normalisers[field](value)


def test_ucxl_vectors(protocol_vectors: Vectors) -> None:
    for line in protocol_vectors("ucxl"):
        given, expected = line.split(" -> ")
        if expected == "ok":
            assert str(ucxl.parse(given)) == given
        else:
            with pytest.raises(AddressError, match=expected.removeprefix("error: ")):
                ucxl.parse(given)
