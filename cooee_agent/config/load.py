"""Reading the configuration: find the file, parse its TOML, check every key, fill in defaults.

msgspec decodes the TOML's values into the Config Structs (types, bounds, known keys); then the
keys the file set go through the rules their types cannot say (``checks.REFINE``). A refusal
names the file, the line, the key and the rule: ``config.toml:3: heartbeat.jitter: must be in
[0, 0.5], got 0.9``.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec
from msgspec.structs import replace

from cooee_agent.config.checks import (
    FIELDS,
    REFINE,
    TABLES,
    InvalidValue,
    as_list,
    decode_path,
    refine,
)
from cooee_agent.config.model import DEV_LISTEN, NOT_IN_FILE, Config
from cooee_agent.config.ollama_host import OLLAMA_HOST_ENV, parse_ollama_host
from cooee_agent.config.paths import CONFIG_ENV, STATE_DIR_ENV, config_path, state_dir
from cooee_agent.config.private import refuse_if_readable_by_others
from cooee_agent.config.refusals import Steps, explain, split
from cooee_agent.errors import ConfigError
from cooee_agent.files import CONFIG_LIMIT, FileMissing, FileRefused, read_bounded

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
        text = read_bounded(chosen, CONFIG_LIMIT, what="configuration file").decode("utf-8")
    except FileMissing:
        if asked:
            raise ConfigError(f"{chosen}: configuration file not found") from None
        log.debug("no configuration at %s; using defaults", chosen)
        text, source = "", None
    except FileRefused as error:
        raise ConfigError(f"cannot read configuration: {error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{chosen}: cannot read configuration: {error}") from None
    else:
        source = chosen
    config = parse_config(text, source=source, env=env, dev=dev)
    if config.join_token is not None and source is not None:
        refuse_if_readable_by_others(source, "a join token")
    return config


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
    except RecursionError:
        # tomllib recurses once per nested array or table: 100,000 '[' exhaust the stack.
        raise ConfigError(f"{where}: invalid TOML: nested too deeply") from None

    def fail(section: str, key: str, message: str) -> ConfigError:
        line = _line_of(text, section, key or None)
        name = f"{section}.{key}" if section and key else (key or section)
        at = f"{where}:{line}" if line else where
        return ConfigError(f"{at}: {name}: {message}")

    config = _refined(_decoded(raw, fail), raw, fail)
    try:
        state = state_dir(configured=config.state_dir, env=env)
    except (OSError, ValueError) as error:
        raise ConfigError(f"${STATE_DIR_ENV}: {error}") from None
    ollama = config.ollama
    if "host" not in raw.get("ollama", {}) and env.get(OLLAMA_HOST_ENV):
        # Where the file is silent, find Ollama where Ollama itself would listen.
        ollama = replace(ollama, host=parse_ollama_host(env[OLLAMA_HOST_ENV]).dial)
    mesh = config.mesh
    if dev:
        if "listen" not in raw.get("mesh", {}):
            mesh = replace(mesh, listen=DEV_LISTEN)
        if mesh.mdns:
            raise fail("mesh", "mdns", "must be false in dev mode (dev stays on 127.0.0.1)")
    return replace(config, state_dir=state, ollama=ollama, mesh=mesh, source=source)


# Makes the refusal for (table, key, rule), naming the file and line.
_Fail = Callable[[str, str, str], ConfigError]
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<name>[^`]*)`")


def _decoded(raw: dict[str, Any], fail: _Fail) -> Config:
    """The file's values as a Config, their types and bounds checked by msgspec; the first
    refusal names its key."""
    for name in NOT_IN_FILE & raw.keys():  # a Config field, but not for the file to set
        raise _unknown(raw, (), name, fail)
    for section, kinds in FIELDS.items():
        table = raw.get(section) if section else raw
        if isinstance(table, dict):
            for key in kinds.keys() & table.keys():
                table[key] = as_list(table[key], kinds[key])
    try:
        return msgspec.convert(raw, Config, strict=True, dec_hook=decode_path)
    except msgspec.ValidationError as error:
        said, steps = split(str(error))
        unknown = _UNKNOWN.fullmatch(said)
        if unknown is not None:
            raise _unknown(raw, steps, unknown["name"], fail) from None
        names = [step for step in steps if isinstance(step, str)]
        section, key = names[:2] if len(names) > 1 else ("", names[0] if names else "")
        raise fail(section, key, explain(said, steps, raw, Config)) from None


def _unknown(raw: dict[str, Any], steps: Steps, name: str, fail: _Fail) -> ConfigError:
    section = str(steps[0]) if steps else ""
    if not section and isinstance(raw.get(name), dict):
        tables = ", ".join(f"[{table}]" for table in TABLES if table)
        return fail(name, "", f"unknown table (known: {tables})")
    hint = ", ".join(sorted(FIELDS[section]))
    return fail(section, name, f"unknown key (known here: {hint})")


def _refined(config: Config, raw: dict[str, Any], fail: _Fail) -> Config:
    """``config`` with each key the file set through the rule its type cannot say
    (``checks.REFINE``), in the file's order; the first refusal names its key."""
    changes: dict[str, dict[str, Any]] = {}
    given = [("", key) for key in raw] + [
        (section, key) for section in TABLES if section for key in raw.get(section, {})
    ]
    for section, key in given:
        if key in REFINE.get(section, {}):
            table = getattr(config, section) if section else config
            try:
                changes.setdefault(section, {})[key] = refine(section, key, getattr(table, key))
            except InvalidValue as error:
                raise fail(section, key, str(error)) from None
    top = changes.pop("", {})
    for section, values in changes.items():
        top[section] = replace(getattr(config, section), **values)
    return replace(config, **top)


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
