"""``cooee-agent leader keygen|bundle|serve|ingest|list|approve|revoke|calls``: the reference
Leader, on the mesh or by hand."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import typer

from cooee_agent.cli.output import emit_json
from cooee_agent.cli.state import STATE
from cooee_agent.config.paths import DEFAULT_STATE_DIR, STATE_DIR_ENV
from cooee_agent.errors import CooeeError

app = typer.Typer(help="Run the reference Leader: on the mesh, or by hand.", no_args_is_help=True)
calls_app = typer.Typer(
    help="Calls for human intervention: list the open ones; close one.",
    invoke_without_command=True,
)
app.add_typer(calls_app, name="calls")

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
    from cooee_agent.protocol.keys import generate_leader_keys

    bundle = generate_leader_keys(state_dir).bundle
    _print_bundle(bundle.text, bundle.fingerprint, as_json)


@app.command()
def bundle(
    state_dir: Path = STATE_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Print the key bundle agents enrol with, and its fingerprint."""
    from cooee_agent.protocol.keys import load_leader_keys

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
    from cooee_agent.leader.registrar import IngestResult, Registrar
    from cooee_agent.protocol.sealing import Window

    if not STATE.debug:
        # Each refusal is printed below with its file name; the library's log line would repeat it.
        logging.getLogger("cooee_agent.leader.registrar").setLevel(logging.ERROR)
    results: list[dict[str, object]] = []
    refused = 0
    with Registrar(state_dir, window=Window(max_age_s=max_age)) as leader:
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
    from cooee_agent.leader.registrar import IngestResult

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
        state = _presence_text(host)
        typer.echo(
            f"{host_id:>4}  {host.hostname}  {host.mac}  {status}  "
            f"{len(host.agents)} agent(s)  {tokens}  {state}"
        )


def _presence_text(host: object) -> str:
    from cooee_agent.leader.registry.views import HostView

    assert isinstance(host, HostView)
    seen = host.presence
    if seen is None:
        return "no heartbeat yet"
    if seen.state == "left":
        return f"left ({seen.reason}) at {seen.last_seen}"
    busy = f" ({seen.agent_state})" if seen.state == "online" and seen.agent_state else ""
    lost = f", {seen.missed} heartbeat(s) missed" if seen.missed else ""
    return f"{seen.state}{busy}, last seen {seen.last_seen}{lost}"


@app.command()
def approve(
    host: str = typer.Argument(..., help="host_id, hostname, mac, or hostname/mac."),
    state_dir: Path = STATE_DIR,
) -> None:
    """Admit a held host, or pin the new key of a host that returned with a different one."""
    from cooee_agent.leader.registrar import Registrar

    _registry(state_dir).close()  # the same "no registry" error as the other verbs
    with Registrar(state_dir) as leader:
        # Also seals and stores the assignment, answered when the agent resends its enrolment.
        view = leader.approve(host, now=datetime.now(UTC))
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


@app.command()
def serve(
    state_dir: Path = STATE_DIR,
    listen: list[str] = typer.Option(
        ["/ip4/0.0.0.0/tcp/4001"],
        "--listen",
        help="Multiaddr to listen on (repeatable); dev and tests use /ip4/127.0.0.1/tcp/PORT.",
    ),
    bootstrap: list[str] = typer.Option(
        [], "--bootstrap", help="Peer multiaddr with /p2p/<id> to keep connected (repeatable)."
    ),
    offline_after: float | None = typer.Option(
        None,
        "--offline-after",
        min=0.1,
        help="Seconds without a heartbeat before a host is offline "
        "(default: three of the intervals the host announces, 90 s at 30 s).",
    ),
    max_age: int = typer.Option(600, "--max-age", min=1, help="Freshness window in seconds."),
    peer_exchange: bool = typer.Option(
        False,
        "--peer-exchange/--no-peer-exchange",
        help="Name other peers in the PRUNEs this Leader sends, so agents it prunes from its "
        "mesh connect to each other (agents follow them with [mesh] peer_exchange = true). "
        "Off by default: docs/PROTOCOL.md section 8 says what it costs.",
    ),
    dht: bool = typer.Option(
        False,
        "--dht/--no-dht",
        help="Run the Kademlia DHT and put a sealed record per host in it, so enrolled hosts "
        "resolve tokens while this Leader is down (resolve --mesh). Assignments then carry the "
        "read key, which agents older than the DHT refuse: upgrade them first.",
    ),
    dht_refresh: float = typer.Option(
        60.0, "--dht-refresh", min=0.5, max=3600, help="Seconds between DHT table refreshes."
    ),
    dht_lifetime: int = typer.Option(
        3600,
        "--dht-lifetime",
        min=60,
        max=7 * 86400,
        help="Seconds a host record stays valid; put again every quarter of it.",
    ),
) -> None:
    """Serve on the COOEE mesh until SIGTERM: enrolments, availability, calls.

    Prints the Leader's multiaddrs and writes them to STATE_DIR/leader.addrs. Exits 1 if the
    mesh node dies under it (a Leader with no network must be restarted, not look healthy).
    """
    import signal
    import threading

    from cooee_agent.agent.logs import setup_logging
    from cooee_agent.agent.systemd import Notifier
    from cooee_agent.leader.host_records import PublishSettings
    from cooee_agent.leader.node import LeaderNode

    setup_logging("debug" if STATE.debug else "info")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    notifier = Notifier()
    with LeaderNode(
        state_dir,
        listen=listen,
        bootstrap=bootstrap,
        offline_after=offline_after,
        max_age_s=max_age,
        peer_exchange=peer_exchange,
        dht=dht,
        dht_refresh_s=dht_refresh,
        publish=PublishSettings(lifetime_s=dht_lifetime, republish_s=dht_lifetime / 4),
    ) as node:
        for addr in node.addrs:
            typer.echo(addr)
        notifier.ready(f"Leader serving on {len(node.addrs)} address(es)")
        try:
            node.run(stop)  # TransportError once the mesh has died: exit 1, one line
        finally:
            notifier.stopping("Leader stopping")


def _calls_book(state_dir: Path):  # type: ignore[no-untyped-def]
    from cooee_agent.leader.calls import CALLS_FILE, CallBook

    return CallBook(state_dir / CALLS_FILE)


@calls_app.callback()
def calls(
    ctx: typer.Context,
    state_dir: Path = STATE_DIR,
    show_all: bool = typer.Option(False, "--all", help="Closed calls too."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array of calls."),
) -> None:
    """List the open calls for intervention (``calls close ID`` closes one)."""
    if ctx.invoked_subcommand is not None:
        return
    from cooee_agent.leader.calls import CALLS_FILE

    found = []
    if (state_dir / CALLS_FILE).exists():  # no file yet: no call was ever made
        with _calls_book(state_dir) as book:
            found = book.calls(include_closed=show_all)
    if as_json:
        emit_json([c.to_dict() for c in found])
        return
    for c in found:
        host = c.hostname if c.host_id is None else f"{c.hostname} (host_id {c.host_id})"
        times = f" x{c.count}" if c.count > 1 else ""
        closed = (
            f"  closed {c.closed_at}" + (f": {c.note}" if c.note else "") if c.closed_at else ""
        )
        typer.echo(
            f"{c.id:>4}  {c.severity:<8}  {host}  {c.reason}{times}  {c.detail}  "
            f"(since {c.last_at}, from {c.origin}){closed}"
        )


@calls_app.command("close")
def close_call(
    call_id: int = typer.Argument(..., help="The call's id (from 'leader calls')."),
    state_dir: Path = STATE_DIR,
    note: str | None = typer.Option(None, "--note", help="What was done, kept with the call."),
) -> None:
    """Close an open call."""
    with _calls_book(state_dir) as book:
        closed = book.close_call(call_id, now=datetime.now(UTC), note=note)
    typer.echo(f"closed call {closed.id} ({closed.reason} of {closed.hostname})")
