"""Where a verb's configuration and state directory come from: ``--config``, ``--state-dir``,
the environment and the file, in that order. Imports neither typer nor the config parser until
a configuration is read, so the plain (argparse) verbs can use it too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CONFIG_HELP = "Configuration file (default: $COOEE_CONFIG, else /etc/cooee-agent/config.toml)."
STATE_DIR_HELP = (
    "State directory (default: state_dir from the config, $COOEE_STATE_DIR, "
    "else /var/lib/cooee-agent)."
)


def load(config: Path | None, state_dir: Path | None) -> Any:
    """The configuration, with ``--state-dir`` applied over the file and the environment."""
    from msgspec.structs import replace

    from cooee_agent.config import load_config

    loaded = load_config(config)
    if state_dir is not None:
        loaded = replace(loaded, state_dir=state_dir.absolute())
    return loaded


def resolve_state_dir(config: Path | None, state_dir: Path | None) -> Path:
    """For the verbs that only read state: the flag, else what the configuration says."""
    if state_dir is not None:
        return state_dir.absolute()
    return Path(load(config, None).state_dir)
