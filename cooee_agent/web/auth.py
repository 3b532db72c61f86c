"""Who may read: the bind address rule (anything but loopback needs a token) and the bearer
token itself, read from a file and compared in constant time."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import os
import stat
from pathlib import Path

from cooee_agent.errors import ConfigError

MAX_TOKEN_BYTES = 4096  # a token file larger than this is a mistake (a key bundle, a log)
MIN_TOKEN_CHARS = 16  # a shorter token is guessable over the network


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) into its parts; the host must be an IP address,
    so the loopback rule below is decided on what is bound, not on what a name resolves to."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise ConfigError(f"HTTP address {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8470")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"HTTP address {text!r}: {host!r} is not an IP address") from None
    if not port_text.isascii() or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"HTTP address {text!r}: port {port_text!r} is not 0-65535")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    return ipaddress.ip_address(host).is_loopback


def read_token_file(path: Path) -> str:
    """The token in ``path`` (surrounding whitespace dropped). Refused: a file others may read
    (it is a password), an empty, short, oversized or non-ASCII one."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"token file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise ConfigError(
                f"token file {path} is readable by others (mode {info.st_mode & 0o777:o}); "
                "chmod 600 it"
            )
        if info.st_size > MAX_TOKEN_BYTES:
            raise ConfigError(f"token file {path} is over {MAX_TOKEN_BYTES} bytes")
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read token file {path}: {error.strerror}") from error
    try:
        token = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"token file {path} holds non-ASCII bytes") from None
    if len(token) < MIN_TOKEN_CHARS or not token.isprintable() or " " in token:
        raise ConfigError(
            f"token file {path}: the token must be one word of at least {MIN_TOKEN_CHARS} "
            "printable characters"
        )
    return token


def require_token_rule(host: str, token: str | None) -> None:
    """Serving beyond this machine without a token would hand the fleet to anyone who asks."""
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"HTTP address {host} is not loopback: give --http-token-file (a file holding a "
            "bearer token, mode 0600), or bind 127.0.0.1"
        )


def tokens_equal(given: str, expected: str) -> bool:
    """Constant time in the characters matched: both sides are hashed first (so their lengths
    do not show either) and the digests compared with ``hmac.compare_digest``."""
    a = hashlib.sha256(given.encode("utf-8", "surrogatepass")).digest()
    b = hashlib.sha256(expected.encode("utf-8")).digest()
    return hmac.compare_digest(a, b)


def presented_token(header: str | None) -> str | None:
    """The token of an ``Authorization`` header: ``Bearer T``, or HTTP Basic with T as the
    password (what a browser sends after its login prompt); None when there is none."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def new_token() -> str:
    """A fresh token (for documentation and tests): 32 random bytes, URL-safe."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii").rstrip("=")
