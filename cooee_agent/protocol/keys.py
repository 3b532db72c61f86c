"""Key files (agent and Leader: Ed25519 signing key, age X25519 identities) and the Leader bundle.

Private keys live in the state directory with mode 0600. Loading refuses a private key file that
group or others can read, as ssh does, because a copied key lets anyone enrol as this host.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pyrage import x25519

from cooee_agent.atomic import create_file
from cooee_agent.files import KEY_LIMIT, FileRefused, make_directory, read_private
from cooee_agent.identity.canonical import CROCKFORD, short_key
from cooee_agent.protocol import b64
from cooee_agent.protocol.errors import KeyFileError

log = logging.getLogger(__name__)

# The key files' names in a state directory.
AGENT_SIGNING_FILE = "agent-signing.key"
AGENT_IDENTITY_FILE = "agent-identity.age"
LEADER_SIGNING_FILE = "leader-signing.key"
LEADER_IDENTITY_FILE = "leader-identity.age"

BUNDLE_PREFIX = "cooee-leader-v1"
FINGERPRINT_BITS = 80
_SECRET_PREFIX = "AGE-SECRET-KEY-1"


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: bytes) -> str:
    """The short id of an Ed25519 public key: the 10-character short key of its SHA-256."""
    return short_key(hashlib.sha256(public_key).hexdigest())


@dataclass(frozen=True, slots=True)
class AgentKeys:
    """The agent's signing key and the age identity the Leader seals assignments to."""

    signing: Ed25519PrivateKey
    identity: x25519.Identity

    @property
    def verify_key(self) -> bytes:
        return raw_public(self.signing)

    @property
    def recipient(self) -> str:
        return str(self.identity.to_public())

    @property
    def agent_id(self) -> str:
        return key_id(self.verify_key)


@dataclass(frozen=True, slots=True)
class LeaderBundle:
    """The Leader's public material: one Ed25519 verify key and its age recipients (newest last).

    Several recipients mean a key rotation is under way; agents seal to all of them.
    """

    verify_key: bytes
    recipients: tuple[str, ...]

    @property
    def text(self) -> str:
        return ".".join((BUNDLE_PREFIX, b64.encode(self.verify_key), *self.recipients))

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.text)

    def __str__(self) -> str:
        return self.text


def fingerprint(bundle_text: str) -> str:
    """First 80 bits of SHA-256 of the bundle text as 16 Crockford characters, in groups of 4."""
    digest = int.from_bytes(hashlib.sha256(bundle_text.encode("ascii")).digest()[:10], "big")
    chars = "".join(CROCKFORD[(digest >> shift) & 0x1F] for shift in range(75, -1, -5))
    return "-".join(chars[i : i + 4] for i in range(0, 16, 4))


def key_fingerprint(ed25519: str) -> str:
    """An agent's key (base64url of its Ed25519 verify key) as an operator compares it: the
    agent's ``status`` and the Leader's ``leader list`` / ``leader approve`` show this."""
    return fingerprint(ed25519)


def parse_bundle(text: str) -> LeaderBundle:
    """Parse ``cooee-leader-v1.<verify key>.<age1…>[.<age1…>…]``; whitespace around is ignored."""
    if not isinstance(text, str) or not text.strip().isascii():
        raise KeyFileError("Leader key bundle must be ASCII text")
    parts = text.strip().split(".")
    if parts[0] != BUNDLE_PREFIX:
        raise KeyFileError(f"Leader key bundle does not start with {BUNDLE_PREFIX!r}")
    if len(parts) < 3:
        raise KeyFileError("Leader key bundle has no age recipient")
    try:
        verify_key = b64.decode(parts[1], 32)
        Ed25519PublicKey.from_public_bytes(verify_key)
    except ValueError as error:
        raise KeyFileError(f"Leader key bundle's verify key is invalid: {error}") from error
    recipients = tuple(parts[2:])
    for recipient in recipients:
        try:
            x25519.Recipient.from_str(recipient)
        except Exception as error:  # pyrage raises its own RecipientError
            raise KeyFileError(
                f"Leader key bundle has an invalid age recipient {recipient!r}"
            ) from error
    if len(set(recipients)) != len(recipients):
        raise KeyFileError("Leader key bundle names an age recipient twice")
    return LeaderBundle(verify_key=verify_key, recipients=recipients)


@dataclass(frozen=True, slots=True)
class LeaderKeys:
    """The Leader's signing key and every age identity it still decrypts with (newest last)."""

    signing: Ed25519PrivateKey
    identities: tuple[x25519.Identity, ...]
    # The verify key in base64url, as every envelope and record the Leader signs names it: made
    # once rather than twice an assignment (5 us each).
    verify_text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "verify_text", b64.encode(raw_public(self.signing)))

    @property
    def bundle(self) -> LeaderBundle:
        return LeaderBundle(
            verify_key=raw_public(self.signing),
            recipients=tuple(str(identity.to_public()) for identity in self.identities),
        )


def check_private_file(path: Path) -> None:
    """Refuse a private key file that is a link, another's, or that group or others can reach."""
    read_private_key(path)


def read_private_key(path: Path) -> bytes:
    """A key file's bytes, refused (saying how to fix it) unless it is safe to trust."""
    try:
        return read_private(path, KEY_LIMIT)
    except FileRefused as error:
        raise KeyFileError(str(error)) from None


def _write_private(path: Path, data: bytes) -> bool:
    """Create ``path`` with mode 0600 unless it exists; True when this call created it.

    Two processes generating at once agree on one key: the second finds the first's file.
    """
    make_directory(path.parent)
    try:
        create_file(path, data)
    except FileExistsError:
        return False
    return True


def _signing_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _identity_text(identities: tuple[x25519.Identity, ...]) -> bytes:
    # The age-keygen layout, so `age -d -i FILE` reads the file as it is.
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = []
    for identity in identities:
        lines += [
            f"# created: {created}",
            f"# public key: {identity.to_public()}",
            str(identity),
        ]
    return ("\n".join(lines) + "\n").encode("ascii")


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    data = read_private_key(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        raise KeyFileError(f"key file {path} is not a PEM Ed25519 private key: {error}") from error
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"key file {path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def load_identities(path: Path) -> tuple[x25519.Identity, ...]:
    """Read an age identity file: ``AGE-SECRET-KEY-1…`` lines; ``#`` comments and blanks skipped."""
    data = read_private_key(path)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as error:
        raise KeyFileError(f"cannot read age identity file {path}: {error}") from error
    identities = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith(_SECRET_PREFIX):
            raise KeyFileError(f"{path}:{number} is not an age X25519 identity (AGE-SECRET-KEY-1…)")
        try:
            identities.append(x25519.Identity.from_str(line))
        except Exception as error:  # pyrage raises its own IdentityError
            raise KeyFileError(f"{path}:{number} is not a valid age identity") from error
    if not identities:
        raise KeyFileError(f"age identity file {path} holds no identity")
    return tuple(identities)


def load_or_create_agent_keys(directory: Path) -> AgentKeys:
    """The agent's keys from ``directory``, generated (mode 0600) on first use."""
    signing_path = directory / AGENT_SIGNING_FILE
    identity_path = directory / AGENT_IDENTITY_FILE
    if not signing_path.exists() and _write_private(
        signing_path, _signing_pem(Ed25519PrivateKey.generate())
    ):
        log.info("generated agent signing key %s", signing_path)
    if not identity_path.exists() and _write_private(
        identity_path, _identity_text((x25519.Identity.generate(),))
    ):
        log.info("generated agent age identity %s", identity_path)
    return load_agent_keys(directory)


def load_agent_keys(directory: Path) -> AgentKeys:
    signing = load_signing_key(directory / AGENT_SIGNING_FILE)
    identities = load_identities(directory / AGENT_IDENTITY_FILE)
    return AgentKeys(signing=signing, identity=identities[-1])


def generate_leader_keys(directory: Path) -> LeaderKeys:
    """Write a new Leader identity (mode 0600); refuse to overwrite an existing one."""
    for name in (LEADER_SIGNING_FILE, LEADER_IDENTITY_FILE):
        if (directory / name).exists():
            raise KeyFileError(
                f"{directory / name} already exists; the Leader keeps its keys "
                "(remove the file first to replace them, which orphans every enrolled agent)"
            )
    if not _write_private(
        directory / LEADER_SIGNING_FILE, _signing_pem(Ed25519PrivateKey.generate())
    ):
        raise KeyFileError(f"{directory / LEADER_SIGNING_FILE} appeared while writing it")
    if not _write_private(
        directory / LEADER_IDENTITY_FILE, _identity_text((x25519.Identity.generate(),))
    ):
        raise KeyFileError(f"{directory / LEADER_IDENTITY_FILE} appeared while writing it")
    return load_leader_keys(directory)


def load_leader_keys(directory: Path) -> LeaderKeys:
    signing_path = directory / LEADER_SIGNING_FILE
    if not signing_path.exists():
        raise KeyFileError(
            f"no Leader key in {directory}; create one with 'cooee-agent leader keygen'"
        )
    return LeaderKeys(
        signing=load_signing_key(signing_path),
        identities=load_identities(directory / LEADER_IDENTITY_FILE),
    )
