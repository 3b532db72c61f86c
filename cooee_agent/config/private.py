"""Files that hold a secret (a join token) must not be readable by others, as keys must not be."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cooee_agent.errors import ConfigError


def refuse_if_readable_by_others(path: Path, what: str) -> None:
    """Raise ConfigError when ``path`` (holding ``what``) is readable by others.

    Group read is allowed: the configuration is 0640 root:cooee so the daemon's group reads it.
    """
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError as error:
        raise ConfigError(f"cannot check the permissions of {path}: {error.strerror}") from None
    if mode & 0o007:
        raise ConfigError(
            f"{path} holds {what} and is accessible by others (mode {mode:04o}); "
            f"run 'chmod o-rwx {path}'"
        )
