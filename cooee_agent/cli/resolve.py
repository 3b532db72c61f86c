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
    decoded = issued_token(token)
    with _registry(state_dir) as registry:
        host = registry.host_by_id(decoded.host_id)
    if host is None:
        raise CooeeError(f"token {decoded.text} names host_id {decoded.host_id}, which no host has")
    slot = next((s for s in host.slots if s["slot"] == decoded.gpu_slot), None)
    if slot is None:
        raise CooeeError(
            f"token {decoded.text} names slot {decoded.gpu_slot} of {host.hostname}, "
            "which has no such slot"
        )
    agents = [a for a in host.agents if a["slot"] == decoded.gpu_slot]
    result = {
        "token": decoded.text,
        "host_id": host.host_id,
        "hostname": host.hostname,
        "mac": host.mac,
        "status": host.status,
        "slot": decoded.gpu_slot,
        "gpu_id": slot["gpu_id"],
        "tuples": [
            {
                "model": a["model"],
                "hostname": a["hostname"],
                "mac": a["mac"],
                "gpu_id": a["gpu_id"],
                "key": a["key"],
            }
            for a in agents
        ],
    }
    if as_json:
        emit_json(result)
        return
    typer.echo(
        f"{decoded.text}: {host.hostname} ({host.mac}) host_id={host.host_id} "
        f"slot={decoded.gpu_slot} gpu={slot['gpu_id']} [{host.status}]"
    )
    for agent in agents:
        typer.echo(f"  {agent['model']}  {agent['key']}")
