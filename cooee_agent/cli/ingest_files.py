"""The files of ``leader ingest``: envelopes read bounded, one bad file never stops the batch,
and the assignments directory checked before anything is committed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from cooee_agent.atomic import replace_file
from cooee_agent.errors import CooeeError, InputError
from cooee_agent.files import FileRefused, read_bounded
from cooee_agent.leader.registrar import IngestResult, Registrar
from cooee_agent.protocol.envelope import MAX_ENVELOPE_BYTES

log = logging.getLogger(__name__)


def read_envelope(path: Path) -> bytes | IngestResult:
    """The file's bytes, or the refusal of a file that is missing, not regular or over 64 KiB.

    At most one byte over the envelope limit is ever read, so a 2 GB file or /dev/zero costs
    64 KiB, and a FIFO is refused rather than waited on.
    """
    try:
        return read_bounded(path, MAX_ENVELOPE_BYTES, what="envelope file")
    except FileRefused as error:
        return IngestResult(False, "unreadable", str(error))


def ingest_one(leader: Registrar, data: bytes) -> IngestResult:
    """``leader.ingest(data)``; a fault in what the file holds refuses that file, never the batch.

    The Registrar never raises for what it was sent by design; this is the batch's guard for a
    parser that does (a 5,000-digit integer, nesting past the recursion limit), so the files
    after it are still ingested and each is reported. Faults of the Leader itself (its
    registry, its keys) still stop the run: they would refuse every file alike.
    """
    try:
        return leader.ingest(data)
    except CooeeError:
        raise
    except (ValueError, RecursionError, TypeError) as error:
        log.debug("ingest raised for what a file held", exc_info=True)
        return IngestResult(False, "schema", f"malformed envelope: {type(error).__name__}")


def assignment_writer(directory: Path | None) -> Callable[[Path, bytes], None]:
    """Where sealed assignments go: a function writing ``DIR/<file name>.assignment``.

    InputError (exit 2) at once when ``directory`` cannot be one, before any enrolment is
    committed; files are replaced whole (an ingest repeated after a crash rewrites them).
    """
    if directory is None:
        return lambda _path, _data: None
    if directory.exists() and not directory.is_dir():
        raise InputError(f"--assignments {directory} exists and is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as error:
        raise InputError(f"--assignments {directory}: cannot create it: {error.strerror}") from None

    def write(path: Path, data: bytes) -> None:
        replace_file(directory / f"{path.name}.assignment", data, mode=0o644)

    return write
