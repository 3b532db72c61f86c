"""``cooee-agent submit pr|dr`` and ``cooee-agent submissions``: queue a PR or DR for SLURP (the
running agent publishes it and keeps it until the Leader's receipt), and list what was sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cooee_agent.cli.config_paths import load, resolve_state_dir
from cooee_agent.cli.output import emit_json
from cooee_agent.cli.run import CONFIG, STATE_DIR

# A file read for a submission: larger ones can never fit the 64 KiB envelope, so they are
# refused unread instead of being read whole.
MAX_FILE_BYTES = 64 * 1024

app = typer.Typer(
    help="Submit a PR or DR to SLURP; the running agent publishes it on cooee/submission/v1.",
    no_args_is_help=True,
)
JSON = typer.Option(False, "--json", help="Print a JSON object.")


def read_input(path: Path, option: str) -> bytes:
    """A file's bytes, at most MAX_FILE_BYTES (InputError naming the option otherwise)."""
    from cooee_agent.errors import InputError

    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise InputError(f"{option} {path}: {error.strerror}") from error
    if len(data) > MAX_FILE_BYTES:
        raise InputError(
            f"{option} {path} is over {MAX_FILE_BYTES} bytes; a submission must fit one "
            "65536-byte envelope"
        )
    return data


def read_text(path: Path, option: str) -> str:
    from cooee_agent.errors import InputError

    try:
        return read_input(path, option).decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{option} {path} is not UTF-8 text: {error}") from error


def _queue(config: Path | None, state_dir: Path | None, record: dict[str, Any]) -> dict[str, Any]:
    from cooee_agent.agent import submitting
    from cooee_agent.agent.enrolling import leader_bundles, sealing_bundle
    from cooee_agent.bus.outbox import Outbox
    from cooee_agent.protocol import load_or_create_agent_keys

    settings = load(config, state_dir)
    directory = Path(settings.state_dir)
    bundle = sealing_bundle(leader_bundles(settings))
    keys = load_or_create_agent_keys(directory)
    with Outbox.open_in(directory) as outbox, submitting.Ledger.open_in(directory) as ledger:
        digest = submitting.queue_submission(outbox, ledger, keys, bundle, record)
    return {
        "id": record["nonce"],
        "kind": record["kind"],
        "title": record["title"],
        "digest": digest,
        "state": "queued",
    }


def _report(queued: dict[str, Any], as_json: bool, state_dir: Path) -> None:
    from cooee_agent.cli.status import read_status

    if as_json:
        emit_json(queued)
        return
    typer.echo(f"queued {queued['kind']} {queued['id']}: {queued['title']}")
    if read_status(state_dir)["agent"] == "running":
        typer.echo("the running agent publishes it and keeps it until the Leader's receipt")
    else:
        typer.echo("no agent is running: it will be published when `cooee-agent run` starts")


@app.command()
def pr(
    title: str = typer.Option(..., "--title", help="One line, at most 255 characters."),
    address: str = typer.Option(..., "--address", help="UCXL address of the context it changes."),
    diff: Path | None = typer.Option(None, "--diff", help="A unified diff to apply."),
    document: Path | None = typer.Option(None, "--document", help="A replacement document."),
    description_file: Path | None = typer.Option(
        None, "--description-file", help="Why, in UTF-8 text."
    ),
    config: Path | None = CONFIG,
    state_dir: Path | None = STATE_DIR,
    as_json: bool = JSON,
) -> None:
    """Queue a PR: a proposed change to the shared context at one UCXL address."""
    from cooee_agent.agent.submitting import pr_record
    from cooee_agent.errors import InputError

    if (diff is None) == (document is None):
        raise InputError("give exactly one of --diff FILE and --document FILE")
    form, path = ("diff", diff) if diff is not None else ("document", document)
    assert path is not None
    record = pr_record(
        title=title,
        address=address,
        change=read_input(path, f"--{form}"),
        form=form,
        description=read_text(description_file, "--description-file") if description_file else "",
    )
    queued = _queue(config, state_dir, record)
    _report(queued, as_json, resolve_state_dir(config, state_dir))


@app.command()
def dr(
    title: str = typer.Option(..., "--title", help="One line, at most 255 characters."),
    status: str = typer.Option(..., "--status", help="proposed, accepted, rejected or superseded."),
    context_file: Path = typer.Option(..., "--context-file", help="The forces at play."),
    decision_file: Path = typer.Option(..., "--decision-file", help="What is decided."),
    consequences_file: Path | None = typer.Option(
        None, "--consequences-file", help="What follows from it."
    ),
    address: list[str] = typer.Option(
        [], "--address", help="UCXL address the decision concerns (repeatable)."
    ),
    supersedes: str | None = typer.Option(
        None, "--supersedes", help="The id of the DR this one replaces."
    ),
    config: Path | None = CONFIG,
    state_dir: Path | None = STATE_DIR,
    as_json: bool = JSON,
) -> None:
    """Queue a DR: a decision record (title, status, context, decision, consequences)."""
    from cooee_agent.agent.submitting import dr_record
    from cooee_agent.errors import InputError
    from cooee_agent.protocol.submissions import DR_STATUSES

    if status not in DR_STATUSES:
        raise InputError(f"--status must be one of {', '.join(DR_STATUSES)}")
    record = dr_record(
        title=title,
        status=status,
        context=read_text(context_file, "--context-file"),
        decision=read_text(decision_file, "--decision-file"),
        consequences=read_text(consequences_file, "--consequences-file")
        if consequences_file
        else "",
        addresses=address,
        supersedes=supersedes,
    )
    queued = _queue(config, state_dir, record)
    _report(queued, as_json, resolve_state_dir(config, state_dir))


def submissions(
    config: Path | None = CONFIG,
    state_dir: Path | None = STATE_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array."),
) -> None:
    """List the PRs and DRs this host submitted and each one's state."""
    from cooee_agent.agent.submitting import LEDGER_FILE, Ledger

    directory = resolve_state_dir(config, state_dir)
    found = []
    if (directory / LEDGER_FILE).exists():  # nothing submitted yet: create nothing
        with Ledger(directory / LEDGER_FILE) as ledger:
            found = ledger.items()
    if as_json:
        emit_json([entry.to_dict() for entry in found])
        return
    for entry in found:
        seq = f"  audit #{entry.audit_seq}" if entry.audit_seq is not None else ""
        why = f": {entry.reason}" if entry.reason else ""
        typer.echo(f"{entry.id}  {entry.kind}  {entry.state}{why}{seq}  {entry.title}")
