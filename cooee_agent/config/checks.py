"""One rule per configuration key, shared by loading a file, the wizard and ``enrol`` flags.

A key's type and bounds are its field in ``model``, which msgspec checks; what a type cannot say
(a multiaddr, a URL, a log level) is a function here, applied to the value msgspec decoded
(``REFINE``). A check takes a value as TOML gives it and returns it normalised, or raises
InvalidValue whose message is the rule that was broken ("must be in [1, 3600], got 0"). The
caller says where the value came from: a file and line, a question, a flag. ``SCHEMA`` lists
every key of the file with its check.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from cooee_agent.config.model import (
    NOT_IN_FILE,
    PRODUCTION_LISTEN,
    Config,
    DegradedThreshold,
    Interval,
    Jitter,
    OfflineAfter,
    Table,
)
from cooee_agent.config.refusals import Range, explain, kind, split
from cooee_agent.errors import ConfigError
from cooee_agent.protocol.records import join_token_problem

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class InvalidValue(ConfigError):
    """A value broke its key's rule; the message is the rule, without the key or the place."""


Check = Callable[[Any], Any]

# The ranges a person is told, read off the model's Meta.
INTERVAL = Range.of(Interval)
JITTER = Range.of(Jitter)
OFFLINE_AFTER = Range.of(OfflineAfter)
DEGRADED_THRESHOLD = Range.of(DegradedThreshold)


# --- decoding with msgspec -----------------------------------------------------------------------


def as_list(value: Any, target: Any) -> Any:
    """A single string where a list is wanted (``target`` is a tuple type) stands for a list of
    one."""
    return [value] if isinstance(value, str) and typing.get_origin(target) is tuple else value


def decode_path(target: type, value: Any) -> Any:
    """msgspec's hook for the one type it does not know: a path in the file must be absolute."""
    if target is Path:
        try:
            return absolute_path(value)
        except InvalidValue as error:
            raise ValueError(str(error)) from None  # msgspec adds where it was
    raise NotImplementedError(target)


def typed(value: Any, target: Any) -> Any:
    """``value`` decoded as ``target`` (a key's type, with its bounds), or InvalidValue."""
    value = as_list(value, target)
    try:
        return msgspec.convert(value, target, strict=True, dec_hook=decode_path)
    except msgspec.ValidationError as error:
        said, steps = split(str(error))
        raise InvalidValue(explain(said, steps, value, target)) from None


# --- what a type cannot say: each takes the value msgspec decoded --------------------------------


def text(value: str) -> str:
    """The string without the spaces around it, which must leave something."""
    stripped = value.strip()
    if not stripped:
        raise InvalidValue("must not be empty")
    return stripped


def absolute_path(value: Any) -> Path:
    # msgspec hands a type it does not know (Path) over as TOML gave it: check it is a string.
    if not isinstance(value, str):
        raise InvalidValue(f"must be a string, got {kind(value)}")
    path = Path(text(value))
    if not path.is_absolute():
        raise InvalidValue(f"must be an absolute path, got {str(path)!r}")
    return path


def _log_level(value: str) -> str:
    level = text(value).lower()
    if level not in LOG_LEVELS:
        raise InvalidValue(f"must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return level


def _join_token(value: str) -> str:
    """A credential the Leader compares byte for byte, checked by the Leader's own rule: a token
    the Leader would refuse must not be written, or the host never enrols and is never told."""
    token = text(value)
    problem = join_token_problem(token)
    if problem is not None:
        raise InvalidValue(problem)
    return token


def _parse_multiaddr(value: str) -> Any:
    address = text(value)
    import multiaddr  # type: ignore[import-untyped]  # a libp2p dependency; loaded only when a file names addresses

    try:
        return multiaddr.Multiaddr(address)
    except Exception as error:  # multiaddr raises several unrelated types for bad input
        raise InvalidValue(f"is not a valid multiaddr ({address!r}): {error}") from None


def _multiaddr(value: str) -> str:
    """Any valid multiaddr, in its canonical spelling."""
    return str(_parse_multiaddr(value))


def _listen(value: str) -> str:
    address = _multiaddr(value)
    if "/tcp/" not in address:
        raise InvalidValue(f"must be a TCP multiaddr such as {PRODUCTION_LISTEN}, got {address!r}")
    return address


def _ollama_host(value: str) -> str:
    """The Ollama server's base URL: a URL or Ollama's own host:port form, server only."""
    address = text(value)
    # Accept Ollama's own OLLAMA_HOST form ("127.0.0.1:11434") as well as a URL.
    if "://" not in address:
        address = "http://" + address
    try:
        parts = urlsplit(address)
    except ValueError as error:  # "Invalid IPv6 URL" for an unclosed bracket
        raise InvalidValue(f"is not a URL ({error}): {value!r}") from None
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


# What each key's type cannot say, by table ("" for the top level): a function of the decoded
# value, or of each item of a list. A key not here is its type and bounds alone.
REFINE: dict[str, dict[str, Callable[[Any], Any]]] = {
    "": {"log_level": _log_level, "join_token": _join_token},
    "leader": {"keys": text},  # a key's parts are checked when it is used (see leader_key)
    "mesh": {"listen": _listen, "bootstrap": _multiaddr},
    "ollama": {"host": _ollama_host},
}


def refine(section: str, key: str, value: Any) -> Any:
    """``value``, decoded for ``key`` of ``section``, through the rule its type cannot say."""
    rule = REFINE.get(section, {}).get(key)
    if rule is None:
        return value
    if not isinstance(value, tuple):
        return rule(value)
    items = []
    for index, item in enumerate(value):
        try:
            items.append(rule(item))
        except InvalidValue as error:
            raise InvalidValue(f"item {index}: {error}") from None
    return tuple(items)


# --- the keys -----------------------------------------------------------------------------------


def _is_table(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, Table)


# The tables of the file ("" for the top level) and the type of each of their keys.
TABLES: dict[str, type[Table]] = {"": Config} | {
    field.name: field.type for field in msgspec.structs.fields(Config) if _is_table(field.type)
}
FIELDS: dict[str, dict[str, Any]] = {
    section: {
        field.name: field.type
        for field in msgspec.structs.fields(table)
        if not _is_table(field.type) and field.name not in NOT_IN_FILE
    }
    for section, table in TABLES.items()
}


def check(section: str, key: str, value: Any) -> Any:
    """``value`` for ``key`` of ``section`` ("" for the top level): typed, bounded, refined."""
    return refine(section, key, typed(value, FIELDS[section][key]))


# Every key of the file, by table ("" for the top level), with its check.
SCHEMA: dict[str, dict[str, Check]] = {
    section: {key: functools.partial(check, section, key) for key in keys}
    for section, keys in FIELDS.items()
}


def state_dir(value: Any) -> Path:
    return absolute_path(value)


def log_level(value: Any) -> str:
    return str(check("", "log_level", value))


def join_token(value: Any) -> str:
    return str(check("", "join_token", value))


def degraded_threshold(value: Any) -> float:
    return float(check("", "degraded_threshold", value))


def leader_key(value: Any) -> str:
    """A Leader key bundle as the file holds it; its parts are checked when it is used, which
    needs the crypto libraries (see ``answers.check_leader_key`` for a new one)."""
    return text(typed(value, str))


def multiaddr(value: Any) -> str:
    """Any valid multiaddr, in its canonical spelling: what a file's ``bootstrap`` may hold."""
    return _multiaddr(typed(value, str))


def listen(value: Any) -> str:
    return str(check("mesh", "listen", value))


def bootstrap_peer(value: Any) -> str:
    """A peer the mesh can dial: a multiaddr over TCP ending in /p2p/<peer id>.

    Stricter than what a file's ``bootstrap`` may hold, and so required of every new one.
    """
    address = _parse_multiaddr(typed(value, str))
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
    return float(check("heartbeat", "interval", value))


def heartbeat_jitter(value: Any) -> float:
    return float(check("heartbeat", "jitter", value))


def offline_after(value: Any) -> int:
    return int(check("heartbeat", "offline_after", value))


def ollama_host(value: Any) -> str:
    """The Ollama server's base URL: a URL or Ollama's own host:port form, server only."""
    return str(check("ollama", "host", value))
