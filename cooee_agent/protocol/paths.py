"""Where state lives: the state directory and the names of the key files in it."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_STATE_DIR = Path("/var/lib/cooee-agent")
STATE_DIR_ENV = "COOEE_STATE_DIR"

AGENT_SIGNING_FILE = "agent-signing.key"
AGENT_IDENTITY_FILE = "agent-identity.age"
LEADER_SIGNING_FILE = "leader-signing.key"
LEADER_IDENTITY_FILE = "leader-identity.age"


def state_dir(explicit: Path | None = None) -> Path:
    """The state directory: an explicit one, else $COOEE_STATE_DIR, else /var/lib/cooee-agent."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(STATE_DIR_ENV)
    return Path(from_env) if from_env else DEFAULT_STATE_DIR
