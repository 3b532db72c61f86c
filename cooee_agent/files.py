"""Reading a file someone named, safely: bounded, regular files only, private keys checked first.

Every file a user or operator names (an envelope to ingest, ``--config``, ``@FILE`` bundles, a
join-token file) and every key file is read here. A read never takes more than ``limit + 1``
bytes, so ``/dev/zero`` or a 2 GB file costs at most that much memory; it opens with
``O_NONBLOCK`` and refuses anything but a regular file, so a FIFO never hangs the caller; and a
private file is opened with ``O_NOFOLLOW`` and must belong to this user, be private, and sit in
a directory nobody else may write to, as ssh checks its keys.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

from cooee_agent.errors import InputError

log = logging.getLogger(__name__)

# Bounds by kind of file: each well above what the project ever writes, far below harm.
CONFIG_LIMIT = 1024 * 1024  # a configuration file is a few kilobytes
TEXT_LIMIT = 64 * 1024  # a key bundle, a join token file
KEY_LIMIT = 64 * 1024  # a PEM key, an age identity file with many identities

# Shown in place of a value too long or too strange to echo whole.
SHOWN_LIMIT = 80


class FileRefused(InputError):
    """A named file was not read: missing, not a regular file, too large, or unsafe to trust."""


class FileMissing(FileRefused):
    """Nothing is at the path: callers with a default may take it."""


def read_bounded(path: Path, limit: int, *, what: str = "file") -> bytes:
    """The contents of the regular file ``path``, at most ``limit`` bytes; FileRefused otherwise.

    Symbolic links are followed (an operator may point at a file elsewhere); FIFOs, devices,
    sockets and directories are refused before anything is read.
    """
    descriptor = _open(path, os.O_RDONLY | os.O_NONBLOCK, what)
    try:
        _require_regular(descriptor, path, what)
        return _read_at_most(descriptor, path, limit, what)
    finally:
        os.close(descriptor)


def read_private(
    path: Path, limit: int = KEY_LIMIT, *, what: str = "key file", tighten: bool = False
) -> bytes:
    """A private file's contents, after refusing one that others could read, swap or plant.

    Refused: a symbolic link (never followed: a link to /etc/passwd must not be read as a key,
    nor tightened), anything but a regular file, a file owned by another user, a mode that lets
    group or others in, and a directory that group or others may write to (they could replace
    the file). Nothing is changed, the message says what to do; but with ``tighten`` a file of
    this user's own that is too open is made 0600 through the descriptor already opened (never
    through the name, which could by then be a link elsewhere).
    """
    descriptor = _open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW, what)
    try:
        info = _require_regular(descriptor, path, what)
        directory = _directory(path.parent, what, path)
        # root may use a service's key in the service's own state directory (``intervene``
        # signs as the agent); anyone else only their own.
        owners = {os.geteuid()} | ({directory.st_uid} if os.geteuid() == 0 else set())
        if info.st_uid not in owners:
            raise FileRefused(
                f"{what} {path} belongs to uid {info.st_uid}, not to this user "
                f"(uid {os.geteuid()}); a private key must be its user's own"
            )
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077 and tighten and info.st_uid == os.geteuid():
            log.warning("%s %s had mode %04o; setting 0600", what, path, mode)
            os.fchmod(descriptor, 0o600)
        elif mode & 0o077:
            raise FileRefused(
                f"{what} {path} is accessible by group or others (mode {mode:04o}); "
                f"a private key must be private: run 'chmod 600 {path}'"
            )
        _require_private_directory(path.parent, directory, what, path)
        return _read_at_most(descriptor, path, limit, what)
    finally:
        os.close(descriptor)


def require_directory(
    path: Path, *, what: str = "the state directory", missing_ok: bool = True, hint: str = ""
) -> None:
    """InputError unless ``path`` is a directory (or, with ``missing_ok``, nothing yet)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if missing_ok:
            return
        raise FileMissing(f"{what} {path} does not exist{hint}") from None
    except OSError as error:
        raise FileRefused(f"{what} {path}: {error.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise FileRefused(f"{what} {path} is {_kind(info.st_mode)}, not a directory")


def make_directory(path: Path, mode: int = 0o700) -> None:
    """``mkdir -p`` whose modes do not depend on the umask: ``path`` gets ``mode``, each missing
    parent 0755 (under umask 000, ``Path.mkdir(parents=True)`` makes the parents 0777).

    Only directories this call creates are given a mode; existing ones are left as they are.
    A file where a directory must go is refused with one line.
    """
    missing: list[Path] = []
    current = path
    while not current.is_dir():
        if os.path.lexists(current):
            kind = _kind(os.lstat(current).st_mode)
            raise FileRefused(f"{current} is {kind}, not a directory")
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            if not directory.is_dir():
                raise FileRefused(f"{directory} exists and is not a directory") from None
            continue  # made by another process at the same moment: theirs stands
        except OSError as error:
            raise FileRefused(f"cannot create {directory}: {error.strerror}") from None
        # chmod, not mkdir's mode: the umask cannot take bits away from an explicit chmod.
        os.chmod(directory, mode if directory == path else 0o755)


def give_to_directory_owner(directory: Path, names: list[str]) -> None:
    """Run as root in a directory another user owns (a service's state directory), hand the
    files ``names`` that root just made there to that user, so the service can still open them.

    Only regular files owned by root are touched, through descriptors opened without following
    links; anywhere else (not root, a root-owned directory) nothing is done.
    """
    if os.geteuid() != 0:
        return
    owner = os.stat(directory)
    if owner.st_uid == 0:
        return
    for name in names:
        try:
            descriptor = os.open(directory / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue  # not there (SQLite made no -shm yet) or a link: leave it alone
        try:
            info = os.fstat(descriptor)
            if stat.S_ISREG(info.st_mode) and info.st_uid == 0:
                os.fchown(descriptor, owner.st_uid, owner.st_gid)
        finally:
            os.close(descriptor)


def shown(value: object, limit: int = SHOWN_LIMIT) -> str:
    """``value`` as it may be echoed in a one-line message: escaped, and cut at ``limit``.

    Control characters, quotes and non-printables come out as Python escapes (so a message
    stays one line and a terminal never interprets what an attacker typed); a longer value is
    cut with the number of characters left out.
    """
    text = value if isinstance(value, str) else str(value)
    head = text[:limit]
    escaped = repr(head)
    if len(text) > limit:
        return f"{escaped}… ({len(text) - limit} more characters)"
    return escaped


def _open(path: Path, flags: int, what: str) -> int:
    try:
        return os.open(path, flags)
    except FileNotFoundError:
        raise FileMissing(f"{what} {path} does not exist") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise FileRefused(
                f"{what} {path} is a symbolic link, not followed for a private file "
                "(or a loop of links): put the file itself there"
            ) from None
        raise FileRefused(f"cannot read {what} {path}: {error.strerror}") from None


def _require_regular(descriptor: int, path: Path, what: str) -> os.stat_result:
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode):
        raise FileRefused(f"{what} {path} is {_kind(info.st_mode)}, not a regular file")
    return info


def _read_at_most(descriptor: int, path: Path, limit: int, what: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= limit:
            chunk = os.read(descriptor, min(limit + 1 - size, 1024 * 1024))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as error:
        raise FileRefused(f"cannot read {what} {path}: {error.strerror}") from None
    if size > limit:
        raise FileRefused(f"{what} {path} is over the {limit}-byte limit")
    return b"".join(chunks)


def _directory(directory: Path, what: str, path: Path) -> os.stat_result:
    try:
        return os.stat(directory)
    except OSError as error:
        raise FileRefused(
            f"cannot check the directory of {what} {path}: {error.strerror}"
        ) from None


def _require_private_directory(
    directory: Path, info: os.stat_result, what: str, path: Path
) -> None:
    # root trusts the owner of a service's state directory: that user's keys are in it.
    if os.geteuid() != 0 and info.st_uid not in (0, os.geteuid()):
        raise FileRefused(
            f"{what} {path} is in {directory}, which belongs to uid {info.st_uid}, "
            "who could replace it; keep keys in a directory of this user's own"
        )
    mode = stat.S_IMODE(info.st_mode)
    # A sticky directory (/tmp) lets nobody else rename or remove this user's files.
    if mode & 0o022 and not mode & stat.S_ISVTX:
        raise FileRefused(
            f"{what} {path} is in {directory}, which group or others may write to "
            f"(mode {mode:04o}), so they could replace it: run 'chmod go-w {directory}'"
        )


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISREG(mode):
        return "a file"
    return "not a regular file"
