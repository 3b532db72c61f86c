"""The typer root of ``cooee-agent``: the root options, and each verb loaded from the table."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer
import typer.core
import typer.main

from cooee_agent import __version__
from cooee_agent.cli.state import STATE, configure_logging, one_line
from cooee_agent.cli.verbs import VERBS, Verb

if TYPE_CHECKING:
    from typer._click import Command, Context, HelpFormatter
    from typer._click.exceptions import UsageError

PROG = "cooee-agent"

# Plain click help and errors: rich's help panels would import every verb to list them, and
# importing rich costs more start-up than the help it formats.
MARKUP_MODE = None

# A plain verb parses its own arguments, --help included; click must pass them all through.
PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


class VerbGroup(typer.core.TyperGroup):
    """The root group: its commands are the rows of ``VERBS``, each imported when it runs."""

    def list_commands(self, ctx: Context) -> list[str]:
        return list(VERBS)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        verb = VERBS.get(cmd_name)
        return None if verb is None else load_command(cmd_name, verb)

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, verb.help) for name, verb in VERBS.items()])

    def main(  # type: ignore[override]
        self,
        args: Any = None,
        prog_name: str | None = None,
        *,
        standalone_mode: bool = True,
        **kwargs: Any,
    ) -> Any:
        """As click's, but a usage error is one line on stderr (exit 2), as every error is."""
        if not standalone_mode:
            return super().main(args, prog_name, standalone_mode=False, **kwargs)
        import sys

        from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
        from typer.exceptions import Abort

        try:
            code = super().main(args, prog_name, standalone_mode=False, **kwargs)
        except NoArgsIsHelpError as error:  # a bare group: its help is the answer
            error.show()
            sys.exit(error.exit_code)
        except UsageError as error:
            sys.stderr.write(usage_line(error) + "\n")
            sys.exit(error.exit_code)
        except ClickException as error:
            sys.stderr.write(f"{PROG}: error: {one_line(error.format_message())}\n")
            sys.exit(error.exit_code)
        except Abort:
            sys.stderr.write(f"{PROG}: aborted\n")
            sys.exit(1)
        # Without standalone mode click returns what ``typer.Exit`` carried, else the result.
        sys.exit(code if isinstance(code, int) else 0)


def usage_line(error: UsageError) -> str:
    """``cooee-agent leader list: error: No such option: --bogus (see --help)``."""
    where = error.ctx.command_path if error.ctx is not None else PROG
    return f"{where}: error: {one_line(error.format_message())} (see '{where} --help')"


def load_command(name: str, verb: Verb) -> Command:
    """Import the verb's module and make its click command, named ``name``."""
    target = getattr(importlib.import_module(verb.module), verb.attribute)
    # Built under a holder as the root's own, so the verb gets the root's plain help and
    # no completion options, as if registered on the root itself.
    holder = typer.Typer(rich_markup_mode=MARKUP_MODE, add_completion=False)
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
    elif verb.plain:
        holder.command(name, help=verb.help, context_settings=PASSTHROUGH)(_passthrough(target))
    else:
        holder.command(name)(target)
    return typer.main.get_group(holder).commands[name]


def _passthrough(main: Callable[[list[str], str], None]) -> Callable[[typer.Context], None]:
    def command(ctx: typer.Context) -> None:
        main(list(ctx.args), ctx.command_path)

    return command


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"cooee-agent {__version__}")
        raise typer.Exit()


app = typer.Typer(
    cls=VerbGroup,
    name="cooee-agent",
    help="Discover this host's GPUs and models, enrol it with the CHORUS Leader over COOEE.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=MARKUP_MODE,
    context_settings={"help_option_names": ["-h", "--help"]},
)


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
    configure_logging(debug)
