"""Typed agent configuration: read one TOML file, validate every key, fill in the defaults."""

from __future__ import annotations

import logging
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cooee_agent.errors import ConfigError, CooeeError

log = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = Path("/etc/cooee-agent/config.toml")
DEFAULT_STATE_DIR = Path("/var/lib/cooee-agent")
PRODUCTION_LISTEN = "/ip4/0.0.0.0/tcp/4001"
# Dev mode and tests stay on loopback; port 0 lets several agents share one machine.
DEV_LISTEN = "/ip4/127.0.0.1/tcp/0"
DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

ENV_CONFIG = "COOEE_CONFIG"
ENV_STATE_DIR = "COOEE_STATE_DIR"
ENV_OLLAMA_HOST = "OLLAMA_HOST"


@dataclass(frozen=True, slots=True)
class LeaderConfig:
    """The Leader(s) this agent seals its enrolment to; several keys while one is rotated out."""

    keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MeshConfig:
    listen: str = PRODUCTION_LISTEN
    bootstrap: tuple[str, ...] = ()
    mdns: bool = False
    # Join (and so relay) the availability topic, as the Leader does: for a host that carries
    # other agents' heartbeats to the Leader. Others publish theirs without joining it.
    relay_availability: bool = False
    # Follow the peers a bootstrap peer names when it prunes us: off by default, for what it
    # costs in py-libp2p 0.8.1 (docs/PROTOCOL.md §8).
    peer_exchange: bool = False


@dataclass(frozen=True, slots=True)
class HeartbeatConfig:
    interval: float = 30.0
    jitter: float = 0.2
    offline_after: int = 3

    @property
    def offline_timeout(self) -> float:
        """Seconds of silence after which the Leader marks a host offline."""
        return self.interval * self.offline_after

    def delay(self, unit: float) -> float:
        """The wait before the next heartbeat, for ``unit`` drawn uniformly from [0, 1)."""
        return self.interval * (1.0 + self.jitter * (2.0 * unit - 1.0))


@dataclass(frozen=True, slots=True)
class OllamaConfig:
    host: str = DEFAULT_OLLAMA_HOST


@dataclass(frozen=True, slots=True)
class Config:
    state_dir: Path = DEFAULT_STATE_DIR
    log_level: str = "info"
    # A join token is a credential: keep it out of reprs (and so out of logs and tracebacks).
    join_token: str | None = field(default=None, repr=False)
    degraded_threshold: float = 600.0
    leader: LeaderConfig = field(default_factory=LeaderConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    ollama: OllamaConfig = field(default_factory=OllamaConfig)
    source: Path | None = None  # the file it came from; None when every value is a default


class _Invalid(Exception):
    """A value failed its check; turned into a ConfigError naming key, file and line."""


Check = Callable[[Any], Any]


def _is_number(value: Any) -> bool:
    # TOML booleans are Python ints; "interval = true" must not read as 1 second.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(low: float, high: float, *, low_open: bool = False) -> Check:
    def check(value: Any) -> float:
        if not _is_number(value):
            raise _Invalid(f"must be a number, got {_kind(value)}")
        number = float(value)
        too_low = number <= low if low_open else number < low
        if too_low or number > high or number != number:
            bracket = "(" if low_open else "["
            raise _Invalid(f"must be in {bracket}{low:g}, {high:g}], got {value!r}")
        return number

    return check


def _integer(low: int, high: int) -> Check:
    def check(value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Invalid(f"must be an integer, got {_kind(value)}")
        if not low <= value <= high:
            raise _Invalid(f"must be in [{low}, {high}], got {value!r}")
        return value

    return check


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"must be true or false, got {_kind(value)}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"must be a string, got {_kind(value)}")
    text: str = value.strip()
    if not text:
        raise _Invalid("must not be empty")
    return text


def _absolute_path(value: Any) -> Path:
    path = Path(_text(value))
    if not path.is_absolute():
        raise _Invalid(f"must be an absolute path, got {str(path)!r}")
    return path


def _log_level(value: Any) -> str:
    level = _text(value).lower()
    if level not in LOG_LEVELS:
        raise _Invalid(f"must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return level


def _multiaddr(value: Any) -> str:
    text = _text(value)
    import multiaddr  # type: ignore[import-untyped]  # a libp2p dependency; loaded only when a file names addresses

    try:
        return str(multiaddr.Multiaddr(text))
    except Exception as error:  # multiaddr raises several unrelated types for bad input
        raise _Invalid(f"is not a valid multiaddr ({text!r}): {error}") from None


def _listen(value: Any) -> str:
    text = _multiaddr(value)
    if "/tcp/" not in text:
        raise _Invalid(f"must be a TCP multiaddr such as {PRODUCTION_LISTEN}, got {text!r}")
    return text


def _list_of(item: Check) -> Check:
    def check(value: Any) -> tuple[Any, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise _Invalid(f"must be a string or a list of strings, got {_kind(value)}")
        out = []
        for index, element in enumerate(items):
            try:
                out.append(item(element))
            except _Invalid as error:
                raise _Invalid(f"item {index}: {error}") from None
        return tuple(out)

    return check


def _ollama_host(value: Any) -> str:
    text = _text(value)
    # Accept Ollama's own OLLAMA_HOST form ("127.0.0.1:11434") as well as a URL.
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        raise _Invalid(f"has an invalid port: {value!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Invalid(f"must be an http(s) URL or host:port, got {value!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise _Invalid(f"must name a server only (no path or query), got {value!r}")
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if port is None and not netloc.endswith("]"):
        netloc = f"{netloc}:11434"
    return f"{parts.scheme}://{netloc}"


_SCHEMA: dict[str, dict[str, Check]] = {
    "": {
        "state_dir": _absolute_path,
        "log_level": _log_level,
        "join_token": _text,
        "degraded_threshold": _number(0, 7 * 86400, low_open=True),
    },
    "leader": {"keys": _list_of(_text)},
    "mesh": {
        "listen": _listen,
        "bootstrap": _list_of(_multiaddr),
        "mdns": _boolean,
        "relay_availability": _boolean,
        "peer_exchange": _boolean,
    },
    "heartbeat": {
        "interval": _number(1, 3600),
        "jitter": _number(0, 0.5),
        "offline_after": _integer(1, 100),
    },
    "ollama": {"host": _ollama_host},
}


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    names |= {list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


_HEADER = re.compile(r"^\s*\[\s*([^\]\[]+?)\s*\]")


def _line_of(text: str, section: str, key: str | None) -> int | None:
    """Best-effort line of ``key`` in ``section``, or of the table header when ``key`` is None.

    tomllib keeps no positions, so this scans the text; it gives up (None) on exotic layouts.
    """
    local = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=") if key else None
    dotted = re.compile(rf"^\s*{re.escape(section)}\s*\.\s*{re.escape(key)}\s*=") if key else None
    current = ""
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            current = header.group(1).strip("\"' ")
            if key is None and current == section:
                return number
            continue
        if local and current == section and local.match(line):
            return number
        if dotted and section and current == "" and dotted.match(line):
            return number
    return None


def config_path(explicit: Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The file to read: an explicit path, else ``$COOEE_CONFIG``, else the system default."""
    env = os.environ if env is None else env
    if explicit is not None:
        return explicit
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG])
    return DEFAULT_CONFIG_PATH


def load_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    dev: bool = False,
) -> Config:
    """Read and validate the configuration; raises ConfigError naming the key, file and line.

    A missing file is an error only when it was asked for (argument or ``$COOEE_CONFIG``); the
    system default may be absent, and then every value is a default. ``$COOEE_STATE_DIR``
    overrides ``state_dir``. ``dev`` listens on loopback by default and refuses mDNS.
    """
    env = os.environ if env is None else env
    chosen = config_path(path, env)
    asked = path is not None or bool(env.get(ENV_CONFIG))
    try:
        text = chosen.read_text(encoding="utf-8")
    except FileNotFoundError:
        if asked:
            raise ConfigError(f"{chosen}: configuration file not found") from None
        log.debug("no configuration at %s; using defaults", chosen)
        text, source = "", None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{chosen}: cannot read configuration: {error}") from None
    else:
        source = chosen
    return parse_config(text, source=source, env=env, dev=dev)


def parse_config(
    text: str,
    *,
    source: Path | None = None,
    env: Mapping[str, str] | None = None,
    dev: bool = False,
) -> Config:
    """Validate TOML ``text`` (the body of ``source``) into a Config; see load_config."""
    env = os.environ if env is None else env
    where = str(source) if source is not None else "<config>"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{where}: invalid TOML: {error}") from None

    def fail(section: str, key: str, message: str) -> ConfigError:
        line = _line_of(text, section, key or None)
        name = f"{section}.{key}" if section and key else (key or section)
        at = f"{where}:{line}" if line else where
        return ConfigError(f"{at}: {name}: {message}")

    values: dict[str, dict[str, Any]] = {section: {} for section in _SCHEMA}
    for name, value in raw.items():
        if name in _SCHEMA:
            if not isinstance(value, dict):
                raise fail("", name, f"must be a table [{name}], got {_kind(value)}")
            values[name].update(value)
        elif isinstance(value, dict):
            tables = ", ".join(f"[{table}]" for table in _SCHEMA if table)
            raise fail(name, "", f"unknown table (known: {tables})")
        else:
            values[""][name] = value

    checked: dict[str, dict[str, Any]] = {section: {} for section in _SCHEMA}
    for section, items in values.items():
        known = _SCHEMA[section]
        for key, value in items.items():
            if key not in known:
                hint = ", ".join(sorted(known))
                raise fail(section, key, f"unknown key (known here: {hint})")
            try:
                checked[section][key] = known[key](value)
            except _Invalid as error:
                raise fail(section, key, str(error)) from None

    top = checked[""]
    if env.get(ENV_STATE_DIR):
        try:
            top["state_dir"] = Path(env[ENV_STATE_DIR]).absolute()
        except (OSError, ValueError) as error:
            raise ConfigError(f"${ENV_STATE_DIR}: {error}") from None
    ollama = checked["ollama"]
    if "host" not in ollama and env.get(ENV_OLLAMA_HOST):
        # Where the file is silent, find Ollama where Ollama itself would listen.
        from cooee_agent.discovery.ollama import parse_ollama_host

        try:
            ollama["host"] = parse_ollama_host(env[ENV_OLLAMA_HOST]).dial
        except CooeeError as error:
            raise ConfigError(f"${ENV_OLLAMA_HOST}: {error}") from None
    mesh = checked["mesh"]
    if dev:
        mesh.setdefault("listen", DEV_LISTEN)
        if mesh.get("mdns"):
            raise fail("mesh", "mdns", "must be false in dev mode (dev stays on 127.0.0.1)")
    return Config(
        **top,
        leader=LeaderConfig(**checked["leader"]),
        mesh=MeshConfig(**mesh),
        heartbeat=HeartbeatConfig(**checked["heartbeat"]),
        ollama=OllamaConfig(**checked["ollama"]),
        source=source,
    )
