"""Writing the agent's first configuration: render the answers as TOML, write it atomically.

The rendered text is read back by the loader before it is written, so what is written is what
loads.
"""

from __future__ import annotations

import difflib
import grp
import logging
import os
import pwd
import tomllib
from dataclasses import dataclass
from pathlib import Path

from cooee_agent.atomic import create_file, replace_file
from cooee_agent.config.answers import Answers
from cooee_agent.config.load import parse_config
from cooee_agent.config.paths import DEFAULT_STATE_DIR
from cooee_agent.errors import ConfigError, CooeeError
from cooee_agent.files import CONFIG_LIMIT, FileMissing, FileRefused, make_directory, read_bounded

log = logging.getLogger(__name__)

CONFIG_MODE = 0o640
AGENT_GROUP = "cooee-agent"
_MASK = "********"


@dataclass(frozen=True, slots=True)
class Written:
    """Where the configuration went and who may read it."""

    path: Path
    replaced: bool
    group: str | None  # the group that may read it, or None when it was left as created
    note: str


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    escaped = []
    for char in text:
        if char in '"\\':
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04X}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def _toml_list(items: tuple[str, ...]) -> str:
    if not items:
        return "[]"
    return "[\n" + "".join(f"    {toml_string(item)},\n" for item in items) + "]"


def _toml_number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def render_config(answers: Answers, *, mask_token: bool = False) -> str:
    """The TOML text; validated by the agent's own parser, so what is written is what loads."""
    lines = [
        "# Written by `cooee-agent enrol`; packaging/config.example.toml documents every key.",
        "",
    ]
    if answers.state_dir is not None and answers.state_dir != DEFAULT_STATE_DIR:
        lines.append(f"state_dir = {toml_string(str(answers.state_dir))}")
    if answers.join_token is not None:
        shown = _MASK if mask_token else answers.join_token
        lines.append("# A credential: keep this file readable by root and cooee-agent only.")
        lines.append(f"join_token = {toml_string(shown)}")
    if lines[-1]:
        lines.append("")
    lines += ["[leader]", f"keys = {_toml_list((answers.leader_key,))}", ""]
    lines += ["[mesh]", f"bootstrap = {_toml_list(answers.bootstrap)}"]
    lines += [f"mdns = {'true' if answers.mdns else 'false'}", ""]
    lines += ["[heartbeat]", f"interval = {_toml_number(answers.interval)}"]
    if answers.ollama_host is not None:
        lines += ["", "[ollama]", f"host = {toml_string(answers.ollama_host)}"]
    text = "\n".join(lines) + "\n"
    if not mask_token:
        parse_config(text, env={})  # a ConfigError here is a bug in the checks above
    return text


def sets_nothing(text: str) -> bool:
    """True for a file that sets no value: the commented template packaging installs."""
    try:
        raw = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError):
        return False
    return all(isinstance(value, dict) and not value for value in raw.values())


def existing_text(path: Path) -> str | None:
    try:
        return read_bounded(path, CONFIG_LIMIT, what="configuration file").decode("utf-8")
    except FileMissing:
        return None
    except (FileRefused, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the existing configuration: {error}") from None


def check_writable(path: Path, *, force: bool) -> bool:
    """Whether ``path`` will be replaced; ConfigError when it holds settings and not ``force``."""
    text = existing_text(path)
    if text is None:
        return False
    if not force and not sets_nothing(text):
        raise ConfigError(
            f"{path} already exists and holds settings; rerun with --force to replace it"
        )
    return True


def check_can_create(path: Path) -> None:
    """Refuse early when ``path`` could not be created or replaced by this user."""
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise CooeeError(f"cannot write {path}: {ancestor} is not writable here (run as root?)")


def summary(answers: Answers, before: str | None) -> list[str]:
    """Diff-like lines of what will be written (the join token masked): '+' new, '-' gone."""
    after = render_config(answers, mask_token=True).splitlines()
    if before is None:
        return ["+ " + line if line else "+" for line in after]
    old = []
    for line in before.splitlines():
        old.append("join_token = " + toml_string(_MASK) if line.startswith("join_token") else line)
    diff = difflib.unified_diff(old, after, "existing", "new", lineterm="", n=2)
    return list(diff) or ["  (no change)"]


def _group_for(path: Path, group: str) -> tuple[int | None, str]:
    """The gid to give the file and a sentence saying who can read it."""
    if os.geteuid() != 0:
        return None, (
            f"left owned by {pwd.getpwuid(os.geteuid()).pw_name} (not running as root); "
            f"the agent reads it only if its user can: as root, 'chgrp {group} {path}'"
        )
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return None, f"left owned by root: there is no {group} group on this host"
    return gid, f"readable by root and the {group} group"


def write_config(path: Path, text: str, *, force: bool, group: str = AGENT_GROUP) -> Written:
    """Write ``text`` to ``path`` atomically with mode 0640; readers see the old or new file.

    Without ``force`` an existing file that holds settings is never replaced, even one that
    appears while this runs (the new file is linked into place, which fails if one exists).
    """
    replaced = check_writable(path, force=force)
    gid, note = _group_for(path, group)
    make_directory(path.parent, 0o755)
    data = text.encode("utf-8")
    try:
        if replaced:
            replace_file(path, data, mode=CONFIG_MODE, gid=gid)
        else:
            create_file(path, data, mode=CONFIG_MODE, gid=gid)
    except FileExistsError:
        raise ConfigError(f"{path} appeared while writing it; not replaced") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot write the configuration: {error}") from None
    log.info("wrote configuration %s", path)
    return Written(
        path=path, replaced=replaced, group=group if gid is not None else None, note=note
    )


@dataclass(frozen=True, slots=True)
class AgentKeysReady:
    agent_id: str
    recipient: str
    created: bool


def ensure_agent_keys(state_dir: Path) -> AgentKeysReady:
    """The agent's keys in ``state_dir`` (0600), created if absent, owned like the directory.

    Run as root into a state directory the agent's user owns, new key files are given to that
    user: otherwise the service could not read keys only root may open.
    """
    from cooee_agent.protocol.keys import (
        AGENT_IDENTITY_FILE,
        AGENT_SIGNING_FILE,
        load_or_create_agent_keys,
    )

    names = (AGENT_SIGNING_FILE, AGENT_IDENTITY_FILE)
    missing = [name for name in names if not (state_dir / name).exists()]
    try:
        keys = load_or_create_agent_keys(state_dir)
    except OSError as error:
        raise CooeeError(f"cannot create the agent keys in {state_dir}: {error}") from None
    if missing and os.geteuid() == 0:
        owner = state_dir.stat()
        for name in missing:
            if owner.st_uid != 0:
                os.chown(state_dir / name, owner.st_uid, owner.st_gid)
    return AgentKeysReady(agent_id=keys.agent_id, recipient=keys.recipient, created=bool(missing))


def apply_answers(
    answers: Answers, *, config_path: Path, force: bool
) -> tuple[AgentKeysReady, Written]:
    """Create the agent keys, then write the configuration: a key failure leaves no config."""
    text = render_config(answers)
    check_writable(config_path, force=force)
    keys = ensure_agent_keys(answers.state_dir or DEFAULT_STATE_DIR)
    return keys, write_config(config_path, text, force=force)
