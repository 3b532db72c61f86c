"""``cooee-agent resolve TOKEN``: which host, slot and agents a token names: from the Leader's
registry, or with ``--mesh`` from the DHT (any enrolled host, the Leader up or not). Both print
the same thing for the same token."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import typer

from cooee_agent.cli.leader import STATE_DIR, _registry
from cooee_agent.cli.output import emit_json
from cooee_agent.cli.run import CONFIG
from cooee_agent.cli.state import STATE
from cooee_agent.errors import CooeeError
from cooee_agent.protocol.records import issued_token


def resolve(
    token: str = typer.Argument(..., help="A 5-character agent token."),
    state_dir: Path = STATE_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
    mesh: bool = typer.Option(
        False,
        "--mesh",
        help="Look the token up in the DHT from this enrolled host (its agent's [mesh] dht on), "
        "not in the Leader's registry. This host's running agent is asked first (its socket in "
        "the state directory); without one, a short-lived DHT client starts here.",
    ),
    no_agent: bool = typer.Option(
        False,
        "--no-agent",
        help="With --mesh: start a short-lived DHT client here even when this host's agent "
        "is running.",
    ),
    config: Path | None = CONFIG,
) -> None:
    """Name the host, GPU slot and agent tuples a token stands for."""
    if no_agent and not mesh:
        raise typer.BadParameter("--no-agent applies only with --mesh", param_hint="--no-agent")
    decoded = issued_token(token)  # malformed or never issued: bad input (exit 2), before any read
    if mesh:
        result = _from_dht(config, decoded, ask_agent=not no_agent)
    else:
        result = _from_registry(state_dir, token)
    if as_json:
        emit_json(result)
        return
    typer.echo(
        f"{result['token']}: {result['hostname']} ({result['mac']}) host_id={result['host_id']} "
        f"slot={result['slot']} gpu={result['gpu_id']} [{result['status']}]"
    )
    for agent in result["tuples"]:
        typer.echo(f"  {agent['model']}  {agent['key']}")


def _from_registry(state_dir: Path, token: str) -> dict[str, Any]:
    from cooee_agent.leader.readonly import NotFound, ReadOnlyState

    _registry(state_dir).close()  # the same "no registry" error as the other verbs
    with ReadOnlyState(state_dir) as state:
        try:  # the JSON of GET /v1/tokens/{token}, from the same function
            return state.token_json(token)
        except NotFound as error:
            raise CooeeError(str(error)) from None


def _from_dht(config: Path | None, decoded: Any, *, ask_agent: bool) -> dict[str, Any]:
    from cooee_agent.agent.mesh_lookup import lookup_host
    from cooee_agent.cli.config_paths import load
    from cooee_agent.identity.canonical import tuple_key

    # py-libp2p (imported only when this command starts a node of its own) logs every peer it
    # fails to dial at WARNING: a lookup with the Leader down is full of those, and none of
    # them is the answer.
    info = lookup_host(
        load(config, None),
        decoded.host_id,
        ask_agent=ask_agent,
        library_log_level=None if STATE.debug else logging.CRITICAL,
    )
    slot = next((s for s in info.slots if s.slot == decoded.gpu_slot), None)
    if slot is None:
        raise CooeeError(
            f"token {decoded.text} names slot {decoded.gpu_slot} of {info.hostname}, "
            "which has no such slot"
        )
    # The same object as the registry's (leader/readonly.token_json), field for field.
    return {
        "token": decoded.text,
        "host_id": info.host_id,
        "hostname": info.hostname,
        "mac": info.mac,
        "status": info.status,
        "slot": decoded.gpu_slot,
        "gpu_id": slot.gpu_id,
        "tuples": [
            {
                "model": t.model,
                "hostname": t.hostname,
                "mac": t.mac,
                "gpu_id": t.gpu_id,
                "key": tuple_key(t),
            }
            for t in slot.tuples
        ],
    }
