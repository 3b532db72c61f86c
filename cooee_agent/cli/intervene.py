"""``cooee-agent intervene``: queue a signed call for human intervention for the daemon to send."""

from __future__ import annotations

from pathlib import Path

import typer

from cooee_agent.cli.config_paths import resolve_state_dir
from cooee_agent.cli.run import CONFIG, STATE_DIR


def intervene(
    reason: str = typer.Option(..., "--reason", help="What a human should look at."),
    severity: str = typer.Option("warning", "--severity", help="info, warning or critical."),
    config: Path | None = CONFIG,
    state_dir: Path | None = STATE_DIR,
) -> None:
    """Queue an intervention call; the running agent publishes it on cooee/intervention/v1."""
    from cooee_agent.agent import intervention
    from cooee_agent.agent.state import ASSIGNMENT_FILE, read_json
    from cooee_agent.bus.outbox import OUTBOX_FILE, Outbox
    from cooee_agent.cli.status import read_status
    from cooee_agent.config.write import ensure_agent_keys
    from cooee_agent.errors import InputError
    from cooee_agent.files import give_to_directory_owner, require_directory, shown
    from cooee_agent.protocol.keys import load_agent_keys
    from cooee_agent.protocol.records import SEVERITIES

    if severity not in SEVERITIES:
        raise InputError(f"--severity must be one of {', '.join(SEVERITIES)}")
    if not reason.strip():
        raise InputError("--reason must not be empty")
    if not " ".join(reason.split()).isprintable():
        raise InputError(f"--reason holds a control character: {shown(reason)}")
    directory = resolve_state_dir(config, state_dir)
    # A mistyped --state-dir must not quietly become a second agent with keys of its own.
    require_directory(
        directory,
        missing_ok=False,
        hint=" (is it the agent's? 'cooee-agent enrol' or 'run' creates it)",
    )
    # As root into the service's state directory, what is made here goes to its owner.
    ensure_agent_keys(directory)
    keys = load_agent_keys(directory)
    stored = read_json(directory / ASSIGNMENT_FILE)
    assignment = stored.get("assignment") if isinstance(stored, dict) else None
    if isinstance(assignment, dict):
        hostname, host_id = assignment.get("hostname"), assignment.get("host_id")
    else:
        from cooee_agent.agent.escalation import local_hostname

        hostname, host_id = local_hostname(), None
    record = intervention.intervention_record(
        hostname=str(hostname),
        host_id=host_id if isinstance(host_id, int) else None,
        reason="operator",
        detail=reason,
        severity=severity,
    )
    with Outbox.open_in(directory) as outbox:
        intervention.queue_intervention(outbox, keys, record)
    give_to_directory_owner(directory, [OUTBOX_FILE + suffix for suffix in ("", "-wal", "-shm")])
    running = read_status(directory)["agent"] == "running"
    typer.echo(f"queued intervention call {record['nonce']} ({severity}): {record['detail']}")
    if running:
        typer.echo("the running agent will publish it within a few seconds")
    else:
        typer.echo("no agent is running: it will be published when `cooee-agent run` starts")
