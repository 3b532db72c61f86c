"""``cooee-agent enrol``: build this host's enrolment from live discovery, sign and seal it."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from cooee_agent.cli.leader import STATE_DIR
from cooee_agent.errors import InputError


def enrol(
    non_interactive: bool = typer.Option(
        False, "--non-interactive", help="Take everything from flags; no questions."
    ),
    leader_key: str | None = typer.Option(
        None, "--leader-key", help="The Leader's key bundle, or @FILE holding it."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the sealed envelope instead of sending it."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Write the sealed envelope to FILE (air-gapped enrolment)."
    ),
    join_token: str | None = typer.Option(None, "--join-token", help="A join token, if any."),
    ollama_host: str | None = typer.Option(
        None, "--ollama-host", help="Ollama base URL (default: OLLAMA_HOST or 127.0.0.1:11434)."
    ),
    state_dir: Path = STATE_DIR,
) -> None:
    """Enrol this host with the Leader."""
    if not non_interactive:
        typer.echo(
            "cooee-agent: error: the interactive wizard is not yet available; "
            "use --non-interactive with --leader-key",
            err=True,
        )
        raise typer.Exit(2)
    if not leader_key:
        raise InputError("--leader-key is required with --non-interactive")
    if not dry_run and out is None:
        raise InputError("sending over the mesh is not available here yet; use --dry-run or --out")
    from cooee_agent.discovery.inventory import agent_tuples, discover
    from cooee_agent.enrolment import (
        build_enrolment,
        load_or_create_agent_keys,
        parse_bundle,
        seal_enrolment,
    )

    text = leader_key
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(
                f"cannot read the Leader key bundle from {text[1:]}: {error}"
            ) from error
    bundle = parse_bundle(text)
    keys = load_or_create_agent_keys(state_dir)
    inventory = discover(ollama_host=ollama_host)
    record = build_enrolment(inventory, agent_tuples(inventory), keys, join_token=join_token)
    envelope = seal_enrolment(record, keys, bundle)
    typer.echo(
        f"sealed to Leader {bundle.fingerprint}: {record.host.hostname} ({record.host.mac}), "
        f"{len(record.slots)} slot(s), {len(record.agents)} agent(s), agent id {keys.agent_id}",
        err=True,
    )
    if out is not None:
        out.write_bytes(envelope + b"\n")
    if dry_run:
        sys.stdout.write(envelope.decode("utf-8") + "\n")
