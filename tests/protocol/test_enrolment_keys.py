"""Key files are created 0600, refused when group or others can read them, and the Leader's
public material round-trips as one bundle string with a stable fingerprint."""

from __future__ import annotations

import dataclasses
import re
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cooee_agent.config.paths import state_dir
from cooee_agent.protocol import b64
from cooee_agent.protocol.errors import KeyFileError
from cooee_agent.protocol.keys import (
    generate_leader_keys,
    load_leader_keys,
    load_or_create_agent_keys,
    parse_bundle,
)


def test_agent_keys_are_created_once_with_mode_0600(tmp_path: Path) -> None:
    first = load_or_create_agent_keys(tmp_path / "state")
    for name in ("agent-signing.key", "agent-identity.age"):
        assert stat.S_IMODE((tmp_path / "state" / name).stat().st_mode) == 0o600
    again = load_or_create_agent_keys(tmp_path / "state")
    assert (again.verify_key, again.recipient) == (first.verify_key, first.recipient)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_key_readable_by_others_is_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    load_or_create_agent_keys(tmp_path)
    path = tmp_path / "agent-signing.key"
    path.chmod(mode)
    with pytest.raises(KeyFileError, match=re.escape(f"chmod 600 {path}")):
        load_or_create_agent_keys(tmp_path)


def test_keygen_refuses_to_overwrite_the_leader_identity(tmp_path: Path) -> None:
    generate_leader_keys(tmp_path)
    with pytest.raises(KeyFileError, match="already exists"):
        generate_leader_keys(tmp_path)


def test_the_bundle_round_trips_and_has_a_short_fingerprint(tmp_path: Path) -> None:
    bundle = generate_leader_keys(tmp_path).bundle
    assert parse_bundle(f"  {bundle.text}\n") == bundle
    assert re.fullmatch(r"[0-9A-Z]{4}(-[0-9A-Z]{4}){3}", bundle.fingerprint)
    assert load_leader_keys(tmp_path).bundle.fingerprint == bundle.fingerprint


def test_the_leader_keys_name_their_verify_key_as_the_bundle_does(tmp_path: Path) -> None:
    keys = generate_leader_keys(tmp_path)
    assert keys.verify_text == b64.encode(keys.bundle.verify_key)
    other = dataclasses.replace(keys, signing=Ed25519PrivateKey.generate())
    assert other.verify_text == b64.encode(other.bundle.verify_key) != keys.verify_text


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "does not start"),
        ("cooee-leader-v1.AAAA", "no age recipient"),
        ("cooee-leader-v1.AAAA.age1xyz", "verify key"),
        ("cooee-leader-v1." + "A" * 43 + ".age1notarecipient", "verify key|age recipient"),
        ("cooee-leader-vł.x.y", "ASCII"),
    ],
)
def test_malformed_bundles_are_refused(text: str, match: str) -> None:
    with pytest.raises(KeyFileError, match=match):
        parse_bundle(text)


def test_the_state_dir_comes_from_the_flag_then_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("COOEE_STATE_DIR", str(tmp_path))
    assert state_dir() == tmp_path
    assert state_dir(Path("/x")) == Path("/x")
    monkeypatch.delenv("COOEE_STATE_DIR")
    assert state_dir() == Path("/var/lib/cooee-agent")
