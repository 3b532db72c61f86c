"""The ``cooee-agent`` command line: parses, calls the library, renders. Nothing else lives here.

Each verb group is a module of its own (``token.py``, ...) registered below; heavy libraries
(libp2p, NVML, udev) are imported inside the commands that need them so ``--help`` stays fast.
"""

from __future__ import annotations

import logging
import sys
import traceback

import typer

from cooee_agent import __version__
from cooee_agent.cli import dev as dev_cli
from cooee_agent.cli import discover as discover_cli
from cooee_agent.cli import enrol as enrol_cli
from cooee_agent.cli import intervene as intervene_cli
from cooee_agent.cli import leader as leader_cli
from cooee_agent.cli import resolve as resolve_cli
from cooee_agent.cli import run as run_cli
from cooee_agent.cli import status as status_cli
from cooee_agent.cli import token as token_cli
from cooee_agent.cli.state import STATE
from cooee_agent.errors import CooeeError

app = typer.Typer(
    name="cooee-agent",
    help="Discover this host's GPUs and models, enrol it with the CHORUS Leader over COOEE.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(token_cli.app, name="token")
app.command("discover")(discover_cli.discover)
app.command("enrol")(enrol_cli.enrol)
app.add_typer(leader_cli.app, name="leader")
app.command("resolve")(resolve_cli.resolve)
app.command("run")(run_cli.run)
app.command("status")(status_cli.status)
app.command("intervene")(intervene_cli.intervene)
app.command("dev")(dev_cli.dev)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"cooee-agent {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_show_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
) -> None:
    """cooee-agent: the CHORUS host-provisioning agent."""
    STATE.debug = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    """Console entry point: maps CooeeError to its exit code and one line on stderr."""
    try:
        app()  # standalone: usage errors exit 2 inside, our own errors come out here
    except CooeeError as error:
        if STATE.debug:
            traceback.print_exc()
        sys.stderr.write(f"cooee-agent: error: {error}\n")
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
