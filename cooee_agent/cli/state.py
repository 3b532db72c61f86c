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
