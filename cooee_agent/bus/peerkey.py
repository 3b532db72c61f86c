"""The node's persistent Ed25519 libp2p identity, kept 0600 in the state directory.

The file holds the libp2p protobuf encoding of the private key exactly as go-libp2p's
``crypto.MarshalPrivateKey`` writes it (type 1, data = 32-byte seed || 32-byte public key), so
the Go peers can read it too. py-libp2p 0.8.1 itself writes only the seed, which Go refuses;
both forms are read. Vector in docs/PROTOCOL.md, section 8.
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cooee_agent.atomic import create_file
from cooee_agent.errors import TransportError

if TYPE_CHECKING:
    from libp2p.crypto.keys import KeyPair

logger = logging.getLogger(__name__)

PEER_KEY_FILE = "peer.key"


def load_or_create_peer_key(state_dir: Path) -> KeyPair:
    """Load ``state_dir/peer.key``, creating it (and ``state_dir``) on first use."""
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.crypto.keys import KeyPair

    path = Path(state_dir) / PEER_KEY_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        key_pair = create_new_key_pair()
        try:
            _write_private(path, encode_peer_key(key_pair.private_key.to_bytes()))
        except FileExistsError:
            # Another process made it first (this node is that one), or a broken link is there.
            raw = _read(path)
        else:
            logger.info("created a new peer key at %s", path)
            return key_pair
    except OSError as error:
        raise TransportError(f"cannot read peer key {path}: {error.strerror}") from error

    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        # A readable key lets anyone impersonate this node on the mesh: tighten it, say so.
        logger.warning("peer key %s had mode %o; setting 0600", path, mode)
        path.chmod(0o600)
    private_key = _decode_peer_key(raw, path)
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
        return path.read_bytes()
    except OSError as error:
        raise TransportError(f"cannot read peer key {path}: {error.strerror}") from error


def _write_private(path: Path, data: bytes) -> None:
    """Create the key 0600, whole or not at all; FileExistsError when one is already there."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    create_file(path, data)
