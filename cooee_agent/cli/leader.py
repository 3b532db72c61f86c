"""``cooee-agent leader keygen|bundle|ingest|list|approve|revoke``: the reference Leader by hand."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import typer

from cooee_agent.cli.output import emit_json
from cooee_agent.cli.state import STATE
from cooee_agent.enrolment.paths import DEFAULT_STATE_DIR, STATE_DIR_ENV
from cooee_agent.errors import CooeeError

app = typer.Typer(help="Run the reference Leader's registry by hand.", no_args_is_help=True)

STATE_DIR = typer.Option(
    DEFAULT_STATE_DIR,
    "--state-dir",
    envvar=STATE_DIR_ENV,
    help="Directory of the Leader's keys and registry.",
)


class IngestRefused(CooeeError):
    """At least one envelope was refused (each is named on its own line)."""


@app.command()
def keygen(
    state_dir: Path = STATE_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Create the Leader identity (mode 0600) and print its key bundle and fingerprint."""
    from cooee_agent.enrolment.keys import generate_leader_keys

    bundle = generate_leader_keys(state_dir).bundle
    _print_bundle(bundle.text, bundle.fingerprint, as_json)


@app.command()
def bundle(
    state_dir: Path = STATE_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Print the key bundle agents enrol with, and its fingerprint."""
    from cooee_agent.enrolment.keys import load_leader_keys

    leader_bundle = load_leader_keys(state_dir).bundle
    _print_bundle(leader_bundle.text, leader_bundle.fingerprint, as_json)


def _print_bundle(text: str, fingerprint: str, as_json: bool) -> None:
    if as_json:
        emit_json({"bundle": text, "fingerprint": fingerprint})
    else:
        typer.echo(text)
        typer.echo(f"fingerprint: {fingerprint}", err=True)


@app.command()
def ingest(
    files: list[Path] = typer.Argument(..., help="Sealed enrolment envelopes, one per file."),
    state_dir: Path = STATE_DIR,
    assignments: Path | None = typer.Option(
        None,
        "--assignments",
        help="Write each sealed assignment to DIR/<file name>.assignment for the agent.",
    ),
    max_age: int = typer.Option(600, "--max-age", min=1, help="Freshness window in seconds."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array of results."),
) -> None:
    """Open, verify and register enrolment envelopes; exit 1 if any is refused."""
    from cooee_agent.enrolment.sealing import Window
    from cooee_agent.leader.ingest import IngestResult, Leader

    if not STATE.debug:
        # Each refusal is printed below with its file name; the library's log line would repeat it.
        logging.getLogger("cooee_agent.leader.ingest").setLevel(logging.ERROR)
    results: list[dict[str, object]] = []
    refused = 0
    with Leader(state_dir, window=Window(max_age_s=max_age)) as leader:
        for path in files:
            try:
                data = path.read_bytes()
            except OSError as error:
                result = IngestResult(False, "unreadable", f"{path}: {error.strerror}")
            else:
                result = leader.ingest(data)
            if result.accepted and assignments is not None and result.assignment_envelope:
                assignments.mkdir(parents=True, exist_ok=True)
                (assignments / f"{path.name}.assignment").write_bytes(result.assignment_envelope)
            refused += not result.accepted
            results.append({"file": str(path), **result.to_dict()})
            if not as_json:
                _print_result(path, result)
    if as_json:
        emit_json(results)
    if refused:
        raise IngestRefused(f"{refused} of {len(files)} envelope(s) refused")


def _print_result(path: Path, result: object) -> None:
    from cooee_agent.leader.ingest import IngestResult

    assert isinstance(result, IngestResult)
    if result.accepted:
        tokens = " ".join(f"{t.slot}={t.token}" for t in result.tokens)
        typer.echo(f"{path}: accepted {result.hostname} host_id={result.host_id} {tokens}")
    else:
        typer.echo(f"{path}: refused: {result.reason}: {result.detail}", err=True)


def _registry(state_dir: Path):  # type: ignore[no-untyped-def]
    from cooee_agent.leader.registry import REGISTRY_FILE, Registry

    path = state_dir / REGISTRY_FILE
    if not path.exists():
        raise CooeeError(f"no registry at {path}; ingest an enrolment first")
    return Registry(path)


@app.command("list")
def list_hosts(
    state_dir: Path = STATE_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array of hosts."),
) -> None:
    """List the registered hosts with their status, slots and agents."""
    with _registry(state_dir) as registry:
        hosts = registry.hosts()
    if as_json:
        emit_json([host.to_dict() for host in hosts])
        return
    for host in hosts:
        status = "active, key change pending" if host.key_change_pending else host.status
        host_id = "-" if host.host_id is None else str(host.host_id)
        tokens = " ".join(str(slot["token"]) for slot in host.slots)
        typer.echo(
            f"{host_id:>4}  {host.hostname}  {host.mac}  {status}  "
            f"{len(host.agents)} agent(s)  {tokens}"
        )


@app.command()
def approve(
    host: str = typer.Argument(..., help="host_id, hostname, mac, or hostname/mac."),
    state_dir: Path = STATE_DIR,
) -> None:
    """Admit a held host, or pin the new key of a host that returned with a different one."""
    with _registry(state_dir) as registry:
        view = registry.approve(host, now=datetime.now(UTC))
    typer.echo(f"approved {view.hostname} ({view.mac}) as host_id {view.host_id}")


@app.command()
def revoke(
    host: str = typer.Argument(..., help="host_id, hostname, mac, or hostname/mac."),
    state_dir: Path = STATE_DIR,
) -> None:
    """Refuse the host from now on; its host_id stays reserved."""
    with _registry(state_dir) as registry:
        view = registry.revoke(host)
    typer.echo(f"revoked {view.hostname} ({view.mac}), host_id {view.host_id}")
