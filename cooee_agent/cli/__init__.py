"""The ``cooee-agent`` command line: parses, calls the library, renders. Nothing else lives here.

Each verb is a module of its own, named in the table ``verbs.VERBS`` and imported only when that
verb runs; heavy libraries (libp2p, NVML, udev) are imported inside the commands that need them.
A plain verb (``token``) runs straight from ``main`` without importing typer at all; every other
verb, ``--help`` and ``--version`` go through the typer root in ``root.py``.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

from cooee_agent.cli.state import STATE, configure_logging
from cooee_agent.cli.verbs import VERBS
from cooee_agent.errors import CooeeError

if TYPE_CHECKING:
    import typer

PROG = "cooee-agent"


def main(argv: list[str] | None = None) -> None:
    """Console entry point: maps CooeeError to its exit code and one line on stderr."""
    args = sys.argv[1:] if argv is None else argv
    try:
        if not _run_plain(args):
            from cooee_agent.cli.root import app

            app(args, prog_name=PROG)  # standalone: usage errors exit 2 inside, ours come out here
    except CooeeError as error:
        if STATE.debug:
            import traceback

            traceback.print_exc()
        sys.stderr.write(f"{PROG}: error: {error}\n")
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


def _run_plain(args: list[str]) -> bool:
    """Run a plain verb, after any ``--debug``, without typer; False if ``args`` name none."""
    debug = False
    while args[:1] == ["--debug"]:
        debug, args = True, args[1:]
    verb = VERBS.get(args[0]) if args else None
    if verb is None or not verb.plain:
        return False
    STATE.debug = debug
    if debug:
        configure_logging(debug)
    getattr(importlib.import_module(verb.module), verb.attribute)(args[1:], f"{PROG} {args[0]}")
    return True


def __getattr__(name: str) -> typer.Typer:
    # ``cooee_agent.cli.app``, the typer root, for tests and embedders; built on first use so
    # that importing ``main`` does not import typer.
    if name == "app":
        from cooee_agent.cli.root import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
