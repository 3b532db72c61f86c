"""Where things are: the configuration file and the state directory, each found in one way."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

DEFAULT_CONFIG_PATH = Path("/etc/cooee-agent/config.toml")
CONFIG_ENV = "COOEE_CONFIG"
DEFAULT_STATE_DIR = Path("/var/lib/cooee-agent")
STATE_DIR_ENV = "COOEE_STATE_DIR"


def config_path(explicit: Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The file to read: an explicit path, else ``$COOEE_CONFIG``, else the system default."""
    env = os.environ if env is None else env
    if explicit is not None:
        return explicit
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    return DEFAULT_CONFIG_PATH


def state_dir(
    explicit: Path | None = None,
    *,
    configured: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Path:
    """The state directory: ``explicit`` (a ``--state-dir`` flag), else ``$COOEE_STATE_DIR``,
    else ``configured`` (the file's ``state_dir``), else the default; made absolute."""
    env = os.environ if env is None else env
    if explicit is not None:
        return explicit.absolute()
    if env.get(STATE_DIR_ENV):
        return Path(env[STATE_DIR_ENV]).absolute()
    return configured if configured is not None else DEFAULT_STATE_DIR
