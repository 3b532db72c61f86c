"""Writing a file so that readers and crashes see the old whole file or the new one, never a part.

Both writers fill a temporary file beside the target (the same directory, so the last step is a
rename or a link within one file system), give it its final mode (and group) while nobody else
can open it, and only then put it in place. ``replace_file`` overwrites; ``create_file`` never
does, for keys: a key, once made, is never silently swapped for another.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

PRIVATE = 0o600


def replace_file(
    path: Path, data: bytes, *, mode: int = PRIVATE, gid: int | None = None, durable: bool = True
) -> None:
    """Put ``data`` at ``path`` with exactly ``mode`` (and group ``gid``), replacing any file there.

    ``durable`` syncs the file before the rename and the directory after it, so the new content
    survives a power cut; a file rewritten every few seconds (status) can skip that cost.
    """
    temporary = _filled_temporary(path, data, mode=mode, gid=gid, durable=durable)
    try:
        os.replace(temporary, path)
    except BaseException:
        _remove(temporary)
        raise
    if durable:
        sync_directory(path.parent)


def create_file(path: Path, data: bytes, *, mode: int = PRIVATE, gid: int | None = None) -> None:
    """Create ``path`` holding ``data``; FileExistsError when anything, a symlink too, is there.

    The temporary file is made with O_EXCL|O_NOFOLLOW and mode 0600, so it is never readable by
    others, and it is linked (not renamed) into place: ``link`` refuses an existing name and
    never follows one, so two processes creating at once agree on one file, and a reader never
    sees a half-written one. Always synced: keys are not rewritten, so they must survive a crash.
    """
    temporary = _filled_temporary(path, data, mode=mode, gid=gid, durable=True)
    try:
        os.link(temporary, path)
    finally:
        _remove(temporary)
    sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    """Make a rename or link in ``directory`` durable; a no-op where the system cannot do it."""
    try:
        handle = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass  # some file systems cannot sync a directory; the file itself is synced
    finally:
        os.close(handle)


def _filled_temporary(path: Path, data: bytes, *, mode: int, gid: int | None, durable: bool) -> str:
    """A new file beside ``path`` holding ``data`` with its final mode and group; its name."""
    # mkstemp opens with O_CREAT|O_EXCL|O_NOFOLLOW and mode 0600: nobody else can open it.
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            # fchmod ignores the umask: the mode is exactly what was asked for.
            os.fchmod(handle.fileno(), mode)
            if gid is not None:
                os.fchown(handle.fileno(), -1, gid)
            if durable:
                os.fsync(handle.fileno())
    except BaseException:
        _remove(temporary)
        raise
    return temporary


def _remove(temporary: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
