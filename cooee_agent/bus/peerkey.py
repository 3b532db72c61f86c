"""The node's persistent Ed25519 libp2p identity, kept 0600 in the state directory.

The file holds the libp2p protobuf encoding of the private key exactly as go-libp2p's
``crypto.MarshalPrivateKey`` writes it (type 1, data = 32-byte seed || 32-byte public key), so
the Go peers can read it too. py-libp2p 0.8.1 itself writes only the seed, which Go refuses;
both forms are read. Vector in docs/PROTOCOL.md, section 8.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cooee_agent.atomic import create_file
from cooee_agent.errors import TransportError
from cooee_agent.files import KEY_LIMIT, FileRefused, make_directory, read_private

if TYPE_CHECKING:
    from libp2p.crypto.keys import KeyPair

logger = logging.getLogger(__name__)

PEER_KEY_FILE = "peer.key"


def load_or_create_peer_key(state_dir: Path) -> KeyPair:
    """Load ``state_dir/peer.key``, creating it (and ``state_dir``) on first use."""
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.crypto.keys import KeyPair

    path = Path(state_dir) / PEER_KEY_FILE
    if not os.path.lexists(path):
        key_pair = create_new_key_pair()
        try:
            _write_private(path, encode_peer_key(key_pair.private_key.to_bytes()))
        except FileExistsError:
            pass  # another process made it first (this node is that one): read theirs below
        else:
            logger.info("created a new peer key at %s", path)
            return key_pair
    # Never chmod through the name: a link could point at /etc/passwd, a file could be
    # another's. Only a regular file of this user's own is tightened, through its descriptor.
    private_key = _decode_peer_key(_read(path), path)
    return KeyPair(private_key, private_key.get_public_key())


def encode_peer_key(seed: bytes) -> bytes:
    """go-libp2p's MarshalPrivateKey of an Ed25519 key: protobuf {Type: 1, Data: seed || pub}."""
    from nacl.signing import SigningKey

    public = bytes(SigningKey(seed).verify_key)
    return b"\x08\x01\x12\x40" + seed + public


def _decode_peer_key(raw: bytes, path: Path) -> Any:
    from libp2p.crypto.ed25519 import Ed25519PrivateKey
    from libp2p.crypto.keys import KeyType, PrivateKey

    try:
        message = PrivateKey.deserialize_from_protobuf(raw)
    except Exception as error:
        raise TransportError(f"peer key {path} is not a libp2p private key: {error}") from error
    if message.key_type != KeyType.Ed25519.value:
        raise TransportError(f"peer key {path} is not an Ed25519 key")
    data = bytes(message.data)
    if len(data) not in (32, 64, 96):
        raise TransportError(f"peer key {path} is not a libp2p private key: {len(data)} bytes")
    private_key = Ed25519PrivateKey.from_bytes(data[:32])
    if len(data) > 32 and data[32:64] != private_key.get_public_key().to_bytes():
        raise TransportError(f"peer key {path} is not a libp2p private key: public key mismatch")
    return private_key


def _read(path: Path) -> bytes:
    try:
        return read_private(path, KEY_LIMIT, what="peer key", tighten=True)
    except FileRefused as error:
        raise TransportError(str(error)) from None


def _write_private(path: Path, data: bytes) -> None:
    """Create the key 0600, whole or not at all; FileExistsError when one is already there."""
    make_directory(path.parent)
    create_file(path, data)
