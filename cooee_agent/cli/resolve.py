"""``cooee-agent resolve TOKEN``: which host, slot and agents a token names, from the registry."""

from __future__ import annotations

from pathlib import Path

import typer

from cooee_agent.cli.leader import STATE_DIR, _registry
from cooee_agent.cli.output import emit_json
from cooee_agent.errors import CooeeError
from cooee_agent.protocol.records import issued_token


def resolve(
    token: str = typer.Argument(..., help="A 5-character agent token."),
    state_dir: Path = STATE_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Name the host, GPU slot and agent tuples a token stands for."""
    from cooee_agent.leader.readonly import NotFound, ReadOnlyState

    issued_token(token)  # a malformed or never-issued token is bad input (exit 2), before any read
    _registry(state_dir).close()  # the same "no registry" error as the other verbs
    with ReadOnlyState(state_dir) as state:
        try:  # the JSON of GET /v1/tokens/{token}, from the same function
            result = state.token_json(token)
        except NotFound as error:
            raise CooeeError(str(error)) from None
    if as_json:
        emit_json(result)
        return
    typer.echo(
        f"{result['token']}: {result['hostname']} ({result['mac']}) host_id={result['host_id']} "
        f"slot={result['slot']} gpu={result['gpu_id']} [{result['status']}]"
    )
    for agent in result["tuples"]:
        typer.echo(f"  {agent['model']}  {agent['key']}")
