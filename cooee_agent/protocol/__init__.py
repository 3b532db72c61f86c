"""The COOEE wire protocol: key files, record types, the envelope, and sealing.

The public names below load on first use, so importing a light submodule (``b64``) does not
pull in the crypto libraries.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "new_nonce": "records",
    "KeyFileError": "errors",
    "RejectedError": "errors",
    "AgentKeys": "keys",
    "LeaderBundle": "keys",
    "LeaderKeys": "keys",
    "load_or_create_agent_keys": "keys",
    "parse_bundle": "keys",
    "Assignment": "records",
    "EnrolmentRecord": "records",
    "Window": "sealing",
    "open_assignment": "sealing",
    "open_enrolment": "sealing",
    "open_plain": "sealing",
    "seal_assignment": "sealing",
    "seal_enrolment": "sealing",
    "seal_plain": "sealing",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
