"""One rule per key: the file, the wizard's answers and enrol's flags accept the same values."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cooee_agent.config import checks, parse_config
from cooee_agent.config.answers import (
    check_bootstrap,
    check_interval,
    check_join_token,
    check_ollama_host,
)
from cooee_agent.config.paths import DEFAULT_STATE_DIR, state_dir
from cooee_agent.config.write import toml_string
from cooee_agent.errors import ConfigError, InputError

PEER = "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"


def file_accepts(table: str, key: str, value: str) -> bool:
    try:
        parse_config(f"[{table}]\n{key} = {value}\n" if table else f"{key} = {value}\n", env={})
    except ConfigError:
        return False
    return True


def answer_accepts(check: Callable[[str], object], value: str) -> bool:
    try:
        check(value)
    except InputError:
        return False
    return True


@given(seconds=st.floats(allow_nan=True, allow_infinity=False, width=32))
def test_an_interval_answer_is_accepted_exactly_when_the_file_accepts_it(seconds: float) -> None:
    text = repr(seconds) if seconds == seconds else "nan"
    assert answer_accepts(check_interval, text) == file_accepts("heartbeat", "interval", text)


@given(token=st.text(min_size=1, max_size=40))
def test_a_join_token_answer_is_accepted_exactly_when_the_file_accepts_it(token: str) -> None:
    if not token.strip():
        assert check_join_token(token) is None  # no token: nothing is written
        return
    in_file = file_accepts("", "join_token", toml_string(token))
    assert answer_accepts(check_join_token, token) == in_file


@pytest.mark.parametrize(
    "value", ["10.0.0.5:11434", "http://[::1]", "ftp://x", "http://x/api", "http://x:99999", " "]
)
def test_the_ollama_flag_and_the_file_share_one_rule(value: str) -> None:
    accepted = answer_accepts(check_ollama_host, value)
    assert accepted == file_accepts("ollama", "host", toml_string(value))
    if accepted:
        loaded = parse_config(f"[ollama]\nhost = {toml_string(value)}\n", env={}).ollama.host
        assert check_ollama_host(value) == loaded


def test_a_new_bootstrap_peer_is_held_to_more_than_any_valid_multiaddr() -> None:
    assert check_bootstrap(PEER) == checks.multiaddr(PEER) == PEER
    without_peer_id = "/ip4/10.0.0.1/tcp/4001"
    assert checks.multiaddr(without_peer_id) == without_peer_id
    with pytest.raises(InputError, match=r"the bootstrap peer must end in /p2p/<peer id>"):
        check_bootstrap(without_peer_id)


def test_the_file_refuses_a_join_token_on_two_lines() -> None:
    with pytest.raises(ConfigError, match=r"<config>:1: join_token: .*printable"):
        parse_config('join_token = "one\\ntwo"\n', env={})


def test_a_refusal_is_the_rule_alone() -> None:
    with pytest.raises(checks.InvalidValue) as caught:
        checks.heartbeat_jitter(0.9)
    assert str(caught.value) == "must be in [0, 0.5], got 0.9"
    assert isinstance(caught.value, ConfigError) and caught.value.exit_code == 2


def test_the_state_dir_is_the_flag_then_the_environment_then_the_file() -> None:
    env = {"COOEE_STATE_DIR": "/env/state"}
    configured = Path("/file/state")
    assert state_dir(Path("/flag"), configured=configured, env=env) == Path("/flag")
    assert state_dir(configured=configured, env=env) == Path("/env/state")
    assert state_dir(configured=configured, env={}) == configured
    assert state_dir(env={}) == DEFAULT_STATE_DIR == Path("/var/lib/cooee-agent")


def test_config_imports_neither_discovery_nor_the_bus() -> None:
    code = (
        "import sys, cooee_agent.config, cooee_agent.config.write, cooee_agent.config.answers; "
        "print(sorted(m for m in sys.modules if m.startswith(('cooee_agent.discovery', "
        "'cooee_agent.bus', 'libp2p'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
