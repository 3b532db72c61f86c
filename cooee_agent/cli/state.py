"""Process-wide CLI options (set by the root options, read by commands and main)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CliState:
    debug: bool = False


STATE = CliState()


def configure_logging(debug: bool) -> None:
    """Debug logs with ``--debug``, else warnings only, all on stderr."""
    import logging  # here, not above: the plain verbs start without it unless --debug

    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


# An error line longer than this is cut: a message may echo input, and input has no bound.
MAX_ERROR_LINE = 1000


def one_line(text: str, limit: int = MAX_ERROR_LINE) -> str:
    """``text`` as one line of at most ``limit`` characters, control characters escaped.

    The last guard for error lines: each message should already show input through
    ``files.shown``, but a line that escaped that must still not flood or drive a terminal.
    """
    line = " ".join(text.split("\n"))
    line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)
    if len(line) > limit:
        line = f"{line[:limit]}… ({len(line) - limit} more characters)"
    return line
