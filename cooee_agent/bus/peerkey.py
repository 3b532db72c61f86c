"""The node's persistent Ed25519 libp2p identity, kept 0600 in the state directory.

The file holds the libp2p protobuf encoding of the private key (what go-libp2p's
``crypto.MarshalPrivateKey`` writes), so the same file can be read by other implementations.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from cooee_agent.errors import TransportError

if TYPE_CHECKING:
    from libp2p.crypto.keys import KeyPair

logger = logging.getLogger(__name__)

PEER_KEY_FILE = "peer.key"


def load_or_create_peer_key(state_dir: Path) -> KeyPair:
    """Load ``state_dir/peer.key``, creating it (and ``state_dir``) on first use."""
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.crypto.keys import KeyPair, KeyType
    from libp2p.crypto.serialization import deserialize_private_key

    path = Path(state_dir) / PEER_KEY_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        key_pair = create_new_key_pair()
        _write_private(path, key_pair.private_key.serialize())
        logger.info("created a new peer key at %s", path)
        return key_pair
    except OSError as error:
        raise TransportError(f"cannot read peer key {path}: {error.strerror}") from error

    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        # A readable key lets anyone impersonate this node on the mesh: tighten it, say so.
        logger.warning("peer key %s had mode %o; setting 0600", path, mode)
        path.chmod(0o600)
    try:
        private_key = deserialize_private_key(raw)
    except Exception as error:
        raise TransportError(f"peer key {path} is not a libp2p private key: {error}") from error
    if private_key.get_type() != KeyType.Ed25519:
        raise TransportError(f"peer key {path} is not an Ed25519 key")
    return KeyPair(private_key, private_key.get_public_key())


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` 0600 atomically: a crash leaves either no key or a whole key."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
