"""The agent's configuration: the typed model, one check per key, loading and writing the file.

``model`` holds the values as msgspec Structs, with each key's default, type and bounds;
``checks`` the rule of every key (its type and bounds, and what a type cannot say), which
loading (``load``), the wizard and ``enrol`` flags (``answers``) all apply; ``refusals`` says
msgspec's refusals in the configuration's words; ``paths`` says where the file and the state
directory are; ``write`` renders and writes a first configuration, and is imported from its
module, as only ``enrol`` needs it.
"""

from __future__ import annotations

from cooee_agent.config.checks import LOG_LEVELS, SCHEMA, InvalidValue
from cooee_agent.config.load import load_config, parse_config
from cooee_agent.config.model import (
    DEFAULT_INTERVAL,
    DEFAULT_OLLAMA_HOST,
    DEV_LISTEN,
    PRODUCTION_LISTEN,
    Config,
    HeartbeatConfig,
    LeaderConfig,
    MeshConfig,
    OllamaConfig,
)
from cooee_agent.config.ollama_host import OLLAMA_HOST_ENV
from cooee_agent.config.paths import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    DEFAULT_STATE_DIR,
    STATE_DIR_ENV,
    config_path,
    state_dir,
)

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_INTERVAL",
    "DEFAULT_OLLAMA_HOST",
    "DEFAULT_STATE_DIR",
    "DEV_LISTEN",
    "LOG_LEVELS",
    "OLLAMA_HOST_ENV",
    "PRODUCTION_LISTEN",
    "SCHEMA",
    "STATE_DIR_ENV",
    "Config",
    "HeartbeatConfig",
    "InvalidValue",
    "LeaderConfig",
    "MeshConfig",
    "OllamaConfig",
    "config_path",
    "load_config",
    "parse_config",
    "state_dir",
]
