"""``cooee-agent leader keygen|bundle|serve|ingest|list|approve|revoke|forget|token|calls|
submissions|submission|audit``: the reference Leader, on the mesh or by hand."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import typer

from cooee_agent.cli import leader_submissions
from cooee_agent.cli.leader_tokens import token_app
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
app.add_typer(token_app, name="token")

STATE_DIR = typer.Option(
    DEFAULT_STATE_DIR,
    "--state-dir",
    envvar=STATE_DIR_ENV,
    help="Directory of the Leader's keys and registry.",
)


# The Leader's journal identifier: `journalctl -t cooee-leader` shows it apart from an agent.
LEADER_IDENTIFIER = "cooee-leader"
# SQLite's largest integer: a larger id names no call, and SQLite cannot even be asked.
MAX_CALL_ID = 2**63 - 1


class IngestRefused(CooeeError):
    """At least one envelope was refused (each is named on its own line)."""


@app.command()
def keygen(
    state_dir: Path = STATE_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Create the Leader identity (mode 0600) and print its key bundle and fingerprint."""
    from cooee_agent.files import require_directory
    from cooee_agent.protocol.keys import generate_leader_keys

    require_directory(state_dir)
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
    from cooee_agent.cli.ingest_files import assignment_writer, ingest_one, read_envelope
    from cooee_agent.state_lock import hold_state_dir

    # Checked before any enrolment is committed: a bad --assignments must not leave hosts
    # registered whose assignment was never written (a re-ingest says "replayed").
    write_assignment = assignment_writer(assignments)
    results: list[dict[str, object]] = []
    refused = 0
    with (
        hold_state_dir(state_dir, "cooee-agent leader ingest"),
        Registrar(state_dir, window=Window(max_age_s=max_age)) as leader,
    ):
        for path in files:
            data = read_envelope(path)
            result = data if isinstance(data, IngestResult) else ingest_one(leader, data)
            if result.accepted and result.assignment_envelope:
                write_assignment(path, result.assignment_envelope)
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
    from cooee_agent.leader.database_faults import database_faults
    from cooee_agent.leader.readonly import ReadOnlyState
    from cooee_agent.leader.registry import REGISTRY_FILE

    with database_faults(state_dir / REGISTRY_FILE):
        _registry(state_dir).close()  # the same "no registry" error as the other verbs
        with ReadOnlyState(state_dir) as readonly:
            if as_json:  # the JSON of GET /v1/hosts, from the same function
                emit_json(readonly.hosts_json())
                return
            hosts = readonly.host_views()
    for host in hosts:
        status = "active, key change pending" if host.key_change_pending else host.status
        host_id = "-" if host.host_id is None else str(host.host_id)
        tokens = " ".join(str(slot["token"]) for slot in host.slots)
        state = _presence_text(host)
        typer.echo(
            f"{host_id:>4}  {host.hostname}  {host.mac}  {status}  "
            f"{len(host.agents)} agent(s)  {tokens}  {state}"
        )
        if host.key_fingerprint is not None:
            typer.echo(f"      key {host.key_fingerprint}")
        for fingerprint, seen in host.pending_keys:
            typer.echo(f"      pending key {fingerprint} (last seen {seen})")


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
    key: str | None = typer.Option(
        None,
        "--key",
        help="Fingerprint of the pending key to pin ('leader list' shows them); needed when "
        "several keys claim the host.",
    ),
) -> None:
    """Admit a held host, or pin the new key of a host that returned with a different one."""
    from cooee_agent.leader.registrar import Registrar

    _registry(state_dir).close()  # the same "no registry" error as the other verbs
    with Registrar(state_dir) as leader:
        # Also seals and stores the assignment, answered when the agent resends its enrolment.
        view = leader.approve(host, now=datetime.now(UTC), key=key)
    typer.echo(
        f"approved {view.hostname} ({view.mac}) as host_id {view.host_id}, "
        f"pinning key {view.key_fingerprint}"
    )


@app.command()
def revoke(
    host: str = typer.Argument(..., help="host_id, hostname, mac, or hostname/mac."),
    state_dir: Path = STATE_DIR,
) -> None:
    """Refuse the host from now on; its host_id stays reserved until 'leader forget'."""
    with _registry(state_dir) as registry:
        view = registry.revoke(host, now=datetime.now(UTC))
    typer.echo(f"revoked {view.hostname} ({view.mac}), host_id {view.host_id}")


@app.command()
def forget(
    host: str = typer.Argument(..., help="host_id, hostname, mac, or hostname/mac."),
    state_dir: Path = STATE_DIR,
    grace_days: float = typer.Option(
        7.0,
        "--grace-days",
        min=0.0,
        help="Days since 'leader revoke' before the host may be forgotten (default 7).",
    ),
) -> None:
    """Delete a revoked host so its host_id can be given to a new host.

    Its old slot tokens then name whichever host gets the id next: the grace period is there so
    they are out of use first.
    """
    from datetime import timedelta

    with _registry(state_dir) as registry:
        view = registry.forget(host, now=datetime.now(UTC), grace=timedelta(days=grace_days))
    typer.echo(f"forgot {view.hostname} ({view.mac}); host_id {view.host_id} is free")


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
    http: str | None = typer.Option(
        None,
        "--http",
        metavar="HOST:PORT",
        help="Serve the read-only HTTP API, /metrics and the fleet page there, e.g. "
        "127.0.0.1:8470 (off by default). Any address but loopback needs --http-token-file.",
    ),
    http_token_file: Path | None = typer.Option(
        None,
        "--http-token-file",
        help="File (mode 0600) holding the bearer token every HTTP request must present.",
    ),
    max_pending: int | None = typer.Option(
        None,
        "--max-pending",
        min=0,
        help="Hosts held for 'leader approve' at most (default 256); past it a new host "
        "without a valid join token is refused.",
    ),
    admissions_per_minute: int | None = typer.Option(
        None,
        "--admissions-per-minute",
        min=1,
        help="New hosts admitted on first contact in any minute (default 60); past it they "
        "are refused and admitted when they enrol again.",
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

    Prints the Leader's multiaddrs and writes them to STATE_DIR/leader.addrs, removed again on
    exit. A Leader that was killed (SIGKILL, power loss) cannot remove it: the file is current
    only while a Leader holds STATE_DIR/lock (a second 'leader serve' says so), and the next
    start replaces it. Exits 1 if the mesh node dies under it (a Leader with no network must be
    restarted, not look healthy).
    """
    import signal
    import threading

    from cooee_agent.agent.logs import setup_logging
    from cooee_agent.agent.systemd import Notifier
    from cooee_agent.agent.watchdog import Progress, WatchdogPinger
    from cooee_agent.leader.host_records import PublishSettings
    from cooee_agent.leader.node import LeaderNode

    _check_http_flags(http, http_token_file)
    setup_logging("debug" if STATE.debug else "info", identifier=LEADER_IDENTIFIER)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    from cooee_agent.state_lock import hold_state_dir

    notifier = Notifier()
    with (
        hold_state_dir(state_dir, "cooee-agent leader serve"),
        LeaderNode(
            state_dir,
            listen=listen,
            bootstrap=bootstrap,
            offline_after=offline_after,
            max_age_s=max_age,
            peer_exchange=peer_exchange,
            limits=_limits(max_pending, admissions_per_minute),
            http=http,
            http_token_file=http_token_file,
            dht=dht,
            dht_refresh_s=dht_refresh,
            publish=PublishSettings(lifetime_s=dht_lifetime, republish_s=dht_lifetime / 4),
        ) as node,
    ):
        for addr in node.addrs:
            typer.echo(addr)
        if node.http is not None:
            typer.echo(f"http: {node.http.url}", err=True)
        # READY only now: the mesh listens and leader.addrs is written, so a unit ordered
        # After=cooee-leader.service can read the addresses and dial.
        notifier.ready(f"Leader serving on {len(node.addrs)} address(es)")
        # Under WatchdogSec the pings go out only while the dispatcher loop turns.
        progress = Progress()
        pinger = WatchdogPinger.from_env(progress)
        if pinger is not None:
            pinger.start()
        try:
            # TransportError once the mesh has died: exit 1, one line
            node.run(stop, beat=progress.beat)
        finally:
            if pinger is not None:
                pinger.stop()
            notifier.stopping("Leader stopping")


def _check_http_flags(http: str | None, token_file: Path | None) -> None:
    """Refuse a bad --http before anything starts (exit 2, one line): a bad address, an unusable
    token file, a token file without --http, or a non-loopback address without a token."""
    from cooee_agent.errors import ConfigError
    from cooee_agent.web.auth import parse_bind, read_token_file, require_token_rule

    if http is None:
        if token_file is not None:
            raise ConfigError("--http-token-file needs --http HOST:PORT")
        return
    host, _ = parse_bind(http)
    require_token_rule(host, read_token_file(token_file) if token_file is not None else None)


def _limits(max_pending: int | None, admissions_per_minute: int | None):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from cooee_agent.leader.registry.admission import Limits

    limits = Limits()
    if max_pending is not None:
        limits = replace(limits, max_pending=max_pending)
    if admissions_per_minute is not None:
        limits = replace(limits, admissions_per_minute=admissions_per_minute)
    return limits


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
    from cooee_agent.leader.database_faults import database_faults
    from cooee_agent.leader.readonly import ReadOnlyState

    # No file yet: no call was ever made. The JSON is GET /v1/calls's, from the same function.
    with database_faults(state_dir / CALLS_FILE), ReadOnlyState(state_dir) as readonly:
        if as_json:
            emit_json(readonly.calls_json(include_closed=show_all))
            return
        found = readonly.call_list(include_closed=show_all)
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
    call_id: int = typer.Argument(
        ..., min=1, max=MAX_CALL_ID, help="The call's id (from 'leader calls')."
    ),
    state_dir: Path = STATE_DIR,
    note: str | None = typer.Option(None, "--note", help="What was done, kept with the call."),
) -> None:
    """Close an open call."""
    with _calls_book(state_dir) as book:
        closed = book.close_call(call_id, now=datetime.now(UTC), note=note)
    typer.echo(f"closed call {closed.id} ({closed.reason} of {closed.hostname})")


# PR and DR submissions and their audit log (cli.leader_submissions).
app.command("submissions")(leader_submissions.list_submissions)
app.add_typer(leader_submissions.submission_app, name="submission")
app.add_typer(leader_submissions.audit_app, name="audit")
