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
from cooee_agent.identity import token as codec


def resolve(
    token: str = typer.Argument(..., help="A 5-character agent token."),
    state_dir: Path = STATE_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
    mesh: bool = typer.Option(
        False,
        "--mesh",
        help="Look the token up in the DHT from this enrolled host (its agent's [mesh] dht on), "
        "not in the Leader's registry.",
    ),
    config: Path | None = CONFIG,
) -> None:
    """Name the host, GPU slot and agent tuples a token stands for."""
    decoded = codec.decode(token)
    host = _from_dht(config, decoded.host_id) if mesh else _from_registry(state_dir, decoded)
    slot = next((s for s in host["slots"] if s["slot"] == decoded.gpu_slot), None)
    if slot is None:
        raise CooeeError(
            f"token {decoded.text} names slot {decoded.gpu_slot} of {host['hostname']}, "
            "which has no such slot"
        )
    agents = [a for a in host["agents"] if a["slot"] == decoded.gpu_slot]
    result = {
        "token": decoded.text,
        "host_id": host["host_id"],
        "hostname": host["hostname"],
        "mac": host["mac"],
        "status": host["status"],
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
        f"{decoded.text}: {host['hostname']} ({host['mac']}) host_id={host['host_id']} "
        f"slot={decoded.gpu_slot} gpu={slot['gpu_id']} [{host['status']}]"
    )
    for agent in agents:
        typer.echo(f"  {agent['model']}  {agent['key']}")


def _from_registry(state_dir: Path, decoded: Any) -> dict[str, Any]:
    with _registry(state_dir) as registry:
        view = registry.host_by_id(decoded.host_id)
    if view is None:
        raise CooeeError(f"token {decoded.text} names host_id {decoded.host_id}, which no host has")
    return {
        "host_id": view.host_id,
        "hostname": view.hostname,
        "mac": view.mac,
        "status": view.status,
        "slots": view.slots,
        "agents": view.agents,
    }


def _from_dht(config: Path | None, host_id: int) -> dict[str, Any]:
    from cooee_agent.agent.mesh_lookup import lookup_host
    from cooee_agent.cli.run import load
    from cooee_agent.identity.canonical import tuple_key

    if not STATE.debug:
        import libp2p  # noqa: F401  (its import resets its loggers: silence them after it)

        # The library logs every peer it fails to dial at WARNING: a lookup with the Leader
        # down is full of those, and none of them is the answer.
        logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    info = lookup_host(load(config, None), host_id)
    return {
        "host_id": info.host_id,
        "hostname": info.hostname,
        "mac": info.mac,
        "status": info.status,
        "slots": [{"slot": s.slot, "gpu_id": s.gpu_id} for s in info.slots],
        "agents": [
            {
                "slot": s.slot,
                "model": t.model,
                "hostname": t.hostname,
                "mac": t.mac,
                "gpu_id": t.gpu_id,
                "key": tuple_key(t),
            }
            for s in info.slots
            for t in s.tuples
        ],
    }
