"""The node's libp2p identity persists, privately, in the state directory."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from cooee_agent.bus.peerkey import PEER_KEY_FILE, encode_peer_key, load_or_create_peer_key
from cooee_agent.errors import TransportError


def _peer_id(state_dir: Path) -> str:
    from libp2p.peer.id import ID

    return ID.from_pubkey(load_or_create_peer_key(state_dir).public_key).to_base58()


def test_the_key_is_created_once_0600_and_gives_the_same_peer_id_after_a_restart(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    first = _peer_id(state)
    assert stat.S_IMODE((state / PEER_KEY_FILE).stat().st_mode) == 0o600
    assert _peer_id(state) == first
    assert first.startswith("12D3KooW")  # an Ed25519 identity, inlined in the peer id
    assert _peer_id(tmp_path / "other") != first


def test_a_key_readable_by_others_is_made_private(tmp_path: Path) -> None:
    first = _peer_id(tmp_path)
    (tmp_path / PEER_KEY_FILE).chmod(0o644)
    assert _peer_id(tmp_path) == first
    assert stat.S_IMODE((tmp_path / PEER_KEY_FILE).stat().st_mode) == 0o600


def test_a_corrupt_key_file_is_a_transport_error_not_a_new_identity(tmp_path: Path) -> None:
    (tmp_path / PEER_KEY_FILE).write_bytes(b"not a key")
    with pytest.raises(TransportError, match="not a libp2p private key"):
        load_or_create_peer_key(tmp_path)
    assert (tmp_path / PEER_KEY_FILE).read_bytes() == b"not a key"


def test_a_non_ed25519_key_is_refused(tmp_path: Path) -> None:
    from libp2p.crypto.secp256k1 import create_new_key_pair

    (tmp_path / PEER_KEY_FILE).write_bytes(create_new_key_pair().private_key.serialize())
    with pytest.raises(TransportError, match="Ed25519"):
        load_or_create_peer_key(tmp_path)


def test_the_peer_key_vector_in_the_protocol_document(
    protocol_vectors: Callable[[str], list[str]], tmp_path: Path
) -> None:
    [line] = protocol_vectors("peer-key")
    seed, file_hex, peer_id = line.split()
    assert encode_peer_key(bytes.fromhex(seed)).hex() == file_hex
    (tmp_path / PEER_KEY_FILE).write_bytes(bytes.fromhex(file_hex))
    assert _peer_id(tmp_path) == peer_id


def test_a_seed_only_key_as_py_libp2p_writes_it_is_read(tmp_path: Path) -> None:
    from libp2p.crypto.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.new(bytes(range(32)))
    (tmp_path / PEER_KEY_FILE).write_bytes(key.serialize())
    assert _peer_id(tmp_path) == "12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB"


def test_a_key_whose_public_half_does_not_match_its_seed_is_refused(tmp_path: Path) -> None:
    raw = bytearray(encode_peer_key(bytes(range(32))))
    raw[-1] ^= 1
    (tmp_path / PEER_KEY_FILE).write_bytes(bytes(raw))
    with pytest.raises(TransportError, match="mismatch"):
        load_or_create_peer_key(tmp_path)
