"""OLLAMA_HOST is parsed exactly as Ollama's envconfig.Host parses it."""

from __future__ import annotations

import json

import pytest
from discovery_support import OLLAMA_FIXTURES
from hypothesis import given
from hypothesis import strategies as st

from cooee_agent.discovery.ollama import parse_ollama_host

VECTORS = json.loads((OLLAMA_FIXTURES / "ollama_host_vectors.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(("value", "expected"), VECTORS, ids=[repr(v[0]) for v in VECTORS])
def test_parse_matches_ollama_envconfig_host(value: str, expected: str) -> None:
    assert parse_ollama_host(value).url == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "http://127.0.0.1:11434"),
        ("1.2.3.4", "http://1.2.3.4:11434"),
        ("http://1.2.3.4", "http://1.2.3.4:80"),
        ("https://1.2.3.4", "https://1.2.3.4:443"),
        ("https://example.com/ollama", "https://example.com:443/ollama"),
        ("::1", "http://[::1]:11434"),
        ("ollama.com", "https://ollama.com:443"),
        (":66000", "http://:11434"),
    ],
)
def test_documented_rules(value: str | None, expected: str) -> None:
    assert parse_ollama_host(value).url == expected


def test_dial_turns_an_empty_or_wildcard_host_into_loopback() -> None:
    assert parse_ollama_host(":1234").dial == "http://127.0.0.1:1234"
    assert parse_ollama_host("0.0.0.0").dial == "http://127.0.0.1:11434"
    assert parse_ollama_host("[::]:9").dial == "http://[::1]:9"


_label = st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)
_hostname = (
    st.lists(_label, min_size=1, max_size=3).map(".".join).filter(lambda name: name != "ollama.com")
)


@given(st.text(max_size=40))
def test_any_value_yields_a_url_with_a_valid_port(value: str) -> None:
    address = parse_ollama_host(value)
    assert 0 <= int(address.port) <= 65535
    assert address.url.startswith(f"{address.scheme}:" if address.scheme else "//")


@given(_hostname)
def test_bare_host_gets_port_11434(host: str) -> None:
    assert parse_ollama_host(host).url == f"http://{host}:11434"


@given(_hostname, st.integers(0, 65535), st.sampled_from(["", "http://", "https://"]))
def test_explicit_port_is_kept(host: str, port: int, scheme: str) -> None:
    address = parse_ollama_host(f"{scheme}{host}:{port}")
    assert (address.host, address.port) == (host, str(port))
    assert address.scheme == (scheme[:-3] or "http")


@given(_hostname, st.sampled_from(["http", "https"]))
def test_scheme_without_port_gets_the_scheme_port_not_11434(host: str, scheme: str) -> None:
    expected = "80" if scheme == "http" else "443"
    assert parse_ollama_host(f"{scheme}://{host}").port == expected


@given(_hostname, st.sampled_from(['"', "'", " ", ' "', "\t'"]))
def test_quotes_and_spaces_around_the_value_are_ignored(host: str, wrap: str) -> None:
    assert parse_ollama_host(f"{wrap}{host}{wrap[::-1]}") == parse_ollama_host(host)


@given(_hostname, st.from_regex(r"[a-z0-9/_-]{1,20}", fullmatch=True))
def test_path_is_kept(host: str, path: str) -> None:
    address = parse_ollama_host(f"https://{host}/{path}")
    assert address.path == path
    assert address.url.startswith(f"https://{host}:443/")
