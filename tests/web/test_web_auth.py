"""Who may read the HTTP server: the bind rule, the token file, the header parser and the
constant-time comparison."""

from __future__ import annotations

import base64
import hmac
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cooee_agent.errors import ConfigError
from cooee_agent.web import auth
from cooee_agent.web.server import HttpService, Response


def test_parse_bind_reads_ipv4_and_bracketed_ipv6() -> None:
    assert auth.parse_bind("127.0.0.1:8470") == ("127.0.0.1", 8470)
    assert auth.parse_bind("[::1]:9470") == ("::1", 9470)
    assert auth.parse_bind(" 0.0.0.0:0 ") == ("0.0.0.0", 0)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("8470", "HOST:PORT"),
        (":8470", "HOST:PORT"),
        ("localhost:8470", "not an IP address"),
        ("127.0.0.1:http", "port"),
        ("127.0.0.1:70000", "port"),
        ("127.0.0.1:-1", "port"),
        ("127.0.0.1:\uff18\uff14\uff17\uff10", "port"),  # fullwidth digits
    ],
)
def test_parse_bind_names_what_is_wrong(text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        auth.parse_bind(text)


@given(st.text(max_size=40))
def test_parse_bind_accepts_or_refuses_with_a_config_error(text: str) -> None:
    try:
        host, port = auth.parse_bind(text)
    except ConfigError:
        return
    assert 0 <= port <= 65535 and host


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "::", "2001:db8::1"])
def test_binding_beyond_loopback_without_a_token_is_refused(host: str) -> None:
    with pytest.raises(ConfigError, match="--http-token-file"):
        auth.require_token_rule(host, None)
    auth.require_token_rule(host, "a-token-of-sixteen-chars")  # with one it is allowed
    bind = f"[{host}]:0" if ":" in host else f"{host}:0"

    def route(path: str, query: object) -> Response:
        raise AssertionError("never served")

    # The server itself refuses before it binds anything.
    with pytest.raises(ConfigError, match="not loopback"):
        HttpService(bind, route)  # type: ignore[arg-type]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1"])
def test_loopback_needs_no_token(host: str) -> None:
    auth.require_token_rule(host, None)


def test_tokens_are_compared_with_the_constant_time_helper(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    expected = "abcdefghijklmnopqrstuvwxyz"
    # A long matching prefix and none at all go through the same call on equal-length digests:
    # how much of the token matched cannot change what is compared, so cannot change its time.
    assert not auth.tokens_equal(expected[:-1] + "!", expected)
    assert not auth.tokens_equal("!", expected)
    assert auth.tokens_equal(expected, expected)
    assert len(seen) == 3
    assert {len(a) for a, _ in seen} == {len(b) for _, b in seen} == {32}


@given(st.text(max_size=64), st.text(min_size=1, max_size=64))
def test_tokens_equal_is_string_equality(given_text: str, expected: str) -> None:
    assert auth.tokens_equal(given_text, expected) == (given_text == expected)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer   abc  ", "abc"),
        ("Basic " + base64.b64encode(b"user:pa:ss").decode(), "pa:ss"),
        ("Basic " + base64.b64encode(b"user:").decode(), None),
        ("Basic %%%", None),
        ("Digest abc", None),
        ("", None),
        (None, None),
    ],
)
def test_presented_token_reads_bearer_and_basic(header: str | None, token: str | None) -> None:
    assert auth.presented_token(header) == token


@given(st.text(max_size=80))
def test_presented_token_never_raises(header: str) -> None:
    auth.presented_token(header)


def _token_file(tmp_path: Path, data: bytes, mode: int = 0o600) -> Path:
    path = tmp_path / "token"
    path.write_bytes(data)
    path.chmod(mode)
    return path


def test_a_token_file_is_read_stripped(tmp_path: Path) -> None:
    token = auth.new_token()
    assert auth.read_token_file(_token_file(tmp_path, f"{token}\n".encode())) == token


@pytest.mark.parametrize(
    ("data", "mode", "named"),
    [
        (b"x" * 40, 0o644, "readable by others"),
        (b"short\n", 0o600, "at least 16"),
        (b"two words of a token here\n", 0o600, "one word"),
        ("tök".encode() * 10, 0o600, "non-ASCII"),
        (b"x" * 5000, 0o600, "over 4096 bytes"),
    ],
)
def test_a_bad_token_file_is_refused_naming_why(
    tmp_path: Path, data: bytes, mode: int, named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        auth.read_token_file(_token_file(tmp_path, data, mode))


def test_a_missing_token_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read token file"):
        auth.read_token_file(tmp_path / "absent")
