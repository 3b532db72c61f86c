"""Reading the configuration: find the file, parse its TOML, check every key, fill in defaults.

A refusal names the file, the line, the key and the rule: ``config.toml:3: heartbeat.jitter:
must be in [0, 0.5], got 0.9``.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cooee_agent.config.checks import SCHEMA, InvalidValue, kind
from cooee_agent.config.model import (
    DEV_LISTEN,
    Config,
    HeartbeatConfig,
    LeaderConfig,
    MeshConfig,
    OllamaConfig,
)
from cooee_agent.config.ollama_host import OLLAMA_HOST_ENV, parse_ollama_host
from cooee_agent.config.paths import CONFIG_ENV, STATE_DIR_ENV, config_path, state_dir
from cooee_agent.errors import ConfigError

log = logging.getLogger(__name__)

_HEADER = re.compile(r"^\s*\[\s*([^\]\[]+?)\s*\]")


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
    asked = path is not None or bool(env.get(CONFIG_ENV))
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

    checked = _checked(_by_table(raw, fail), fail)
    top = checked[""]
    try:
        top["state_dir"] = state_dir(configured=top.get("state_dir"), env=env)
    except (OSError, ValueError) as error:
        raise ConfigError(f"${STATE_DIR_ENV}: {error}") from None
    ollama = checked["ollama"]
    if "host" not in ollama and env.get(OLLAMA_HOST_ENV):
        # Where the file is silent, find Ollama where Ollama itself would listen.
        ollama["host"] = parse_ollama_host(env[OLLAMA_HOST_ENV]).dial
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
        ollama=OllamaConfig(**ollama),
        source=source,
    )


# Makes the refusal for (table, key, rule), naming the file and line.
_Fail = Callable[[str, str, str], ConfigError]


def _by_table(raw: dict[str, Any], fail: _Fail) -> dict[str, dict[str, Any]]:
    """The file's values by table ("" for the top level); refuses a table that is not known."""
    values: dict[str, dict[str, Any]] = {section: {} for section in SCHEMA}
    for name, value in raw.items():
        if name in SCHEMA:
            if not isinstance(value, dict):
                raise fail("", name, f"must be a table [{name}], got {kind(value)}")
            values[name].update(value)
        elif isinstance(value, dict):
            tables = ", ".join(f"[{table}]" for table in SCHEMA if table)
            raise fail(name, "", f"unknown table (known: {tables})")
        else:
            values[""][name] = value
    return values


def _checked(values: dict[str, dict[str, Any]], fail: _Fail) -> dict[str, dict[str, Any]]:
    """Every value through its key's check; the first refusal names its key."""
    checked: dict[str, dict[str, Any]] = {section: {} for section in SCHEMA}
    for section, items in values.items():
        known = SCHEMA[section]
        for key, value in items.items():
            if key not in known:
                hint = ", ".join(sorted(known))
                raise fail(section, key, f"unknown key (known here: {hint})")
            try:
                checked[section][key] = known[key](value)
            except InvalidValue as error:
                raise fail(section, key, str(error)) from None
    return checked


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
