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

from cooee_agent.cli.state import STATE, configure_logging, one_line
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
        _report(str(error), error.exit_code)
    except OSError as error:
        # A file fault no verb foresaw (disk full, a directory where a file goes, permission):
        # still one line, naming the file, exit 1.
        where = f"{error.filename}: " if error.filename else ""
        _report(f"{where}{error.strerror or error}", 1)
    except KeyboardInterrupt:
        sys.exit(130)


def _report(message: str, code: int) -> None:
    if STATE.debug:
        import traceback

        traceback.print_exc()
    sys.stderr.write(f"{PROG}: error: {one_line(message)}\n")
    sys.exit(code)


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
