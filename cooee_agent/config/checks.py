"""One check per configuration key, shared by loading a file, the wizard and ``enrol`` flags.

A check takes a value as TOML gives it and returns it normalised, or raises InvalidValue whose
message is the rule that was broken ("must be in [1, 3600], got 0"). The caller says where the
value came from: a file and line, a question, a flag. ``SCHEMA`` lists every key of the file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cooee_agent.config.model import PRODUCTION_LISTEN
from cooee_agent.errors import ConfigError

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
MAX_TOKEN_LENGTH = 4096


class InvalidValue(ConfigError):
    """A value broke its key's rule; the message is the rule, without the key or the place."""


Check = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Range:
    """The numbers a key allows: ``low`` to ``high``, ``low`` itself excluded when ``low_open``."""

    low: float
    high: float
    low_open: bool = False

    def __contains__(self, number: float) -> bool:
        above = number > self.low if self.low_open else number >= self.low
        return above and number <= self.high  # NaN is in no range

    def __str__(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"

    @property
    def words(self) -> str:
        """The range for a person: "1 to 3600"."""
        return f"{self.low:g} to {self.high:g}"


INTERVAL = Range(1, 3600)
JITTER = Range(0, 0.5)
OFFLINE_AFTER = Range(1, 100)
DEGRADED_THRESHOLD = Range(0, 7 * 86400, low_open=True)


def kind(value: Any) -> str:
    """What a TOML value is, as a refusal names it."""
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    names |= {list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def number(value: Any, allowed: Range) -> float:
    # TOML booleans are Python ints; "interval = true" must not read as 1 second.
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidValue(f"must be a number, got {kind(value)}")
    if float(value) not in allowed:
        raise InvalidValue(f"must be in {allowed}, got {value!r}")
    return float(value)


def integer(value: Any, allowed: Range) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidValue(f"must be an integer, got {kind(value)}")
    if value not in allowed:
        raise InvalidValue(f"must be in {allowed}, got {value!r}")
    return value


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidValue(f"must be true or false, got {kind(value)}")
    return value


def text(value: Any) -> str:
    """A string with something in it, without the spaces around it."""
    if not isinstance(value, str):
        raise InvalidValue(f"must be a string, got {kind(value)}")
    stripped: str = value.strip()
    if not stripped:
        raise InvalidValue("must not be empty")
    return stripped


def list_of(item: Check) -> Check:
    """A check for a list of what ``item`` accepts; a single value stands for a list of one."""

    def check(value: Any) -> tuple[Any, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise InvalidValue(f"must be a string or a list of strings, got {kind(value)}")
        out = []
        for index, element in enumerate(items):
            try:
                out.append(item(element))
            except InvalidValue as error:
                raise InvalidValue(f"item {index}: {error}") from None
        return tuple(out)

    return check


# --- the keys -----------------------------------------------------------------------------------


def state_dir(value: Any) -> Path:
    path = Path(text(value))
    if not path.is_absolute():
        raise InvalidValue(f"must be an absolute path, got {str(path)!r}")
    return path


def log_level(value: Any) -> str:
    level = text(value).lower()
    if level not in LOG_LEVELS:
        raise InvalidValue(f"must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return level


def join_token(value: Any) -> str:
    """A credential the Leader compares byte for byte: one line of printable text."""
    token = text(value)
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidValue(f"must be at most {MAX_TOKEN_LENGTH} characters long")
    if not token.isprintable():
        raise InvalidValue("must be one line of printable characters")
    return token


def degraded_threshold(value: Any) -> float:
    return number(value, DEGRADED_THRESHOLD)


def leader_key(value: Any) -> str:
    """A Leader key bundle as the file holds it; its parts are checked when it is used, which
    needs the crypto libraries (see ``answers.check_leader_key`` for a new one)."""
    return text(value)


def _parse_multiaddr(value: Any) -> Any:
    address = text(value)
    import multiaddr  # type: ignore[import-untyped]  # a libp2p dependency; loaded only when a file names addresses

    try:
        return multiaddr.Multiaddr(address)
    except Exception as error:  # multiaddr raises several unrelated types for bad input
        raise InvalidValue(f"is not a valid multiaddr ({address!r}): {error}") from None


def multiaddr(value: Any) -> str:
    """Any valid multiaddr, in its canonical spelling."""
    return str(_parse_multiaddr(value))


def listen(value: Any) -> str:
    address = multiaddr(value)
    if "/tcp/" not in address:
        raise InvalidValue(f"must be a TCP multiaddr such as {PRODUCTION_LISTEN}, got {address!r}")
    return address


def bootstrap_peer(value: Any) -> str:
    """A peer the mesh can dial: a multiaddr over TCP ending in /p2p/<peer id>.

    Stricter than what a file's ``bootstrap`` may hold, and so required of every new one.
    """
    address = _parse_multiaddr(value)
    spelt = str(address)
    names = [protocol.name for protocol in address.protocols()]
    if not names or names[-1] != "p2p":
        raise InvalidValue(
            f"must end in /p2p/<peer id> (the peer the Leader prints), got {spelt!r}"
        )
    if "tcp" not in names:
        raise InvalidValue(
            f"must name a TCP port, e.g. /ip4/10.0.0.1/tcp/4001/p2p/<id>, got {spelt!r}"
        )
    return spelt


def heartbeat_interval(value: Any) -> float:
    return number(value, INTERVAL)


def heartbeat_jitter(value: Any) -> float:
    return number(value, JITTER)


def offline_after(value: Any) -> int:
    return integer(value, OFFLINE_AFTER)


def ollama_host(value: Any) -> str:
    """The Ollama server's base URL: a URL or Ollama's own host:port form, server only."""
    address = text(value)
    # Accept Ollama's own OLLAMA_HOST form ("127.0.0.1:11434") as well as a URL.
    if "://" not in address:
        address = "http://" + address
    parts = urlsplit(address)
    try:
        port = parts.port
    except ValueError:
        raise InvalidValue(f"has an invalid port: {value!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidValue(f"must be an http(s) URL or host:port, got {value!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidValue(f"must name a server only (no path or query), got {value!r}")
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if port is None and not netloc.endswith("]"):
        netloc = f"{netloc}:11434"
    return f"{parts.scheme}://{netloc}"


# Every key of the file, by table ("" for the top level), with its check.
SCHEMA: dict[str, dict[str, Check]] = {
    "": {
        "state_dir": state_dir,
        "log_level": log_level,
        "join_token": join_token,
        "degraded_threshold": degraded_threshold,
    },
    "leader": {"keys": list_of(leader_key)},
    "mesh": {
        "listen": listen,
        "bootstrap": list_of(multiaddr),
        "mdns": boolean,
        "relay_availability": boolean,
        "peer_exchange": boolean,
    },
    "heartbeat": {
        "interval": heartbeat_interval,
        "jitter": heartbeat_jitter,
        "offline_after": offline_after,
    },
    "ollama": {"host": ollama_host},
}
