"""What an operator answers, by the wizard or by ``enrol`` flags, checked by the keys' own checks.

An answer is text; each function here turns it into the value the configuration will hold, or
raises InputError saying, in the operator's words, which rule it broke.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from cooee_agent.config import checks
from cooee_agent.config.model import DEFAULT_INTERVAL
from cooee_agent.config.private import refuse_if_readable_by_others
from cooee_agent.errors import InputError
from cooee_agent.files import TEXT_LIMIT, FileRefused, read_bounded

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Answers:
    """What an operator decided; everything the first configuration holds."""

    leader_key: str
    bootstrap: tuple[str, ...] = ()
    mdns: bool = False
    # A credential: kept out of reprs so it never reaches a log line or a traceback.
    join_token: str | None = field(default=None, repr=False)
    interval: float = DEFAULT_INTERVAL
    state_dir: Path | None = None  # written only when it is not the default
    ollama_host: str | None = None


def _answer(check: Callable[[str], T], value: str, subject: str) -> T:
    """``check(value)``, a refusal said as "<subject> <rule>"."""
    try:
        return check(value)
    except checks.InvalidValue as error:
        raise InputError(f"{subject} {error}") from None


def read_bundle_text(value: str) -> str:
    """The bundle itself, or the contents of FILE for ``@FILE``."""
    if not value.startswith("@"):
        return value.strip()
    try:
        data = read_bounded(Path(value[1:]), TEXT_LIMIT, what="bundle file")
        return data.decode("ascii").strip()
    except FileRefused as error:
        raise InputError(f"cannot read the Leader key bundle: {error}") from None
    except UnicodeDecodeError as error:
        raise InputError(f"cannot read the Leader key bundle from {value[1:]}: {error}") from None


def check_leader_key(value: str) -> str:
    """The canonical bundle text (from the text or ``@FILE``); InputError saying what is wrong."""
    from cooee_agent.protocol import KeyFileError, parse_bundle

    text = _answer(checks.leader_key, read_bundle_text(value), "the Leader key bundle")
    try:
        return str(parse_bundle(text).text)
    except KeyFileError as error:
        raise InputError(str(error)) from None


def leader_fingerprint(bundle_text: str) -> str:
    from cooee_agent.protocol.keys import fingerprint

    return fingerprint(bundle_text)


def check_bootstrap(value: str) -> str:
    """A peer address the mesh can dial: a valid multiaddr over TCP ending in /p2p/<peer id>."""
    if not value.strip():
        raise InputError("a bootstrap peer address is empty")
    return _answer(checks.bootstrap_peer, value, "the bootstrap peer")


def check_interval(value: str | float) -> float:
    """Heartbeat seconds, in the range the configuration allows."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise InputError(
            f"the heartbeat interval must be a number of seconds, got {value!r}"
        ) from None
    try:
        return checks.heartbeat_interval(seconds)
    except checks.InvalidValue:
        raise InputError(
            f"the heartbeat interval must be {checks.INTERVAL.words} seconds, got {value!r}"
        ) from None


def check_join_token(value: str) -> str | None:
    """None for no token; else the token, which must be one line of printable text."""
    if not value.strip():
        return None
    return _answer(checks.join_token, value, "the join token")


def read_join_token_file(path: Path) -> str:
    try:
        text = read_bounded(path, TEXT_LIMIT, what="join token file").decode("utf-8")
    except FileRefused as error:
        raise InputError(f"cannot read the join token: {error}") from None
    except UnicodeDecodeError as error:
        raise InputError(f"cannot read the join token from {path}: {error}") from None
    refuse_if_readable_by_others(path, "a join token")
    token = check_join_token(text)
    if token is None:
        raise InputError(f"the join token file {path} is empty")
    return token


def check_ollama_host(value: str) -> str:
    """The Ollama server's address as the configuration will hold it."""
    return _answer(checks.ollama_host, value, "ollama.host")
