"""``cooee-agent dev``: a throw-away Leader and this host's agent, live, on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import typer

from cooee_agent.cli.state import STATE


def dev(
    interval: float = typer.Option(
        5.0, "--interval", min=1.0, help="Heartbeat interval in seconds (production: 30)."
    ),
    heartbeats: int = typer.Option(
        0, "--heartbeats", min=0, help="Stop after the Leader has heard this many (0: run on)."
    ),
    timeout: float = typer.Option(
        60.0, "--timeout", min=1.0, help="Seconds to wait for the assignment before giving up."
    ),
    state_dir: Path | None = typer.Option(
        None,
        "--state-dir",
        help="Keep the dev Leader's and agent's state here (default: a temporary directory, "
        "removed on exit).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print events as JSON lines."),
) -> None:
    """Enrol this host with a throw-away Leader on loopback and show the flow live.

    Starts a Leader with fresh keys and this host's agent in one process, both on 127.0.0.1
    (no mDNS): discovery, the sealed enrolment over the mesh, the assignment with its tokens,
    then heartbeats as the Leader records them. Ctrl-C stops both.
    """
    from cooee_agent.agent.logs import setup_logging
    from cooee_agent.dev import DevCluster

    setup_logging("debug" if STATE.debug else "warning")
    # SIGTERM stops dev as Ctrl-C does: through the finally below, which removes the temporary
    # directory holding the Leader's and the agent's keys (killed by the signal, it stayed).
    signal.signal(signal.SIGTERM, _interrupt)
    root = state_dir.absolute() if state_dir else Path(tempfile.mkdtemp(prefix="cooee-dev-"))
    say = _Printer(as_json)
    cluster = DevCluster(root, interval=interval)
    try:
        say.event(
            "leader",
            f"Leader {cluster.leader.fingerprint} on {cluster.leader.addrs[0]}",
            fingerprint=cluster.leader.fingerprint,
            addrs=cluster.leader.addrs,
        )
        code = _watch(cluster, say, heartbeats=heartbeats, timeout=timeout)
    except KeyboardInterrupt:
        code = 0
    finally:
        cluster.close()
        if state_dir is None:
            shutil.rmtree(root, ignore_errors=True)
    if code:
        raise typer.Exit(code)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _watch(cluster: Any, say: _Printer, *, heartbeats: int, timeout: float) -> int:
    started = time.monotonic()
    phase = None
    host_id = None
    last_seq = None
    heard = 0
    while True:
        status = cluster.agent_status()
        if status["enrolment"] != phase:
            phase = status["enrolment"]
            who = f"agent {status['agent_id']}" if status["agent_id"] else "agent"
            say.event("agent", f"{who}: {phase}", state=phase)
        if host_id is None and status["host_id"] is not None:
            host_id = status["host_id"]
            say.event(
                "assigned",
                f"assigned host_id {host_id} to {status['hostname']}",
                host_id=host_id,
                tokens=status["tokens"],
            )
            for slot in status["tokens"]:
                say.line(f"  slot {slot['slot']:>2}  token {slot['token']}  gpu {slot['gpu_id']}")
        if host_id is not None:
            view = cluster.host(host_id)
            if view is not None and view.seq is not None and view.seq != last_seq:
                last_seq = view.seq
                heard += 1
                beat = status.get("last_heartbeat") or {}
                state = beat.get("state", "?")
                if status.get("reasons"):
                    state = f"{state}: {'; '.join(status['reasons'])}"
                say.event(
                    "heartbeat",
                    f"heartbeat seq {view.seq} ({state}): the Leader sees "
                    f"host {host_id} {view.state}, last seen {view.last_seen}",
                    seq=view.seq,
                    leader_state=view.state,
                    last_seen=view.last_seen,
                )
                if heartbeats and heard >= heartbeats:
                    return 0
        if not cluster.leader_alive:
            say.error(f"the dev Leader stopped: {cluster.leader_error or 'see the log above'}")
            return 1
        if not cluster.agent_alive:
            say.error(f"the agent stopped (exit {cluster.agent_exit}); see the log above")
            return 1
        if host_id is None and time.monotonic() - started > timeout:
            reasons = "; ".join(status.get("reasons") or []) or status["enrolment"]
            say.error(f"no assignment within {timeout:g} s ({reasons})")
            return 1
        time.sleep(0.25)


class _Printer:
    """People get one line per event; scripts get one JSON object per line."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def event(self, kind: str, text: str, **fields: Any) -> None:
        if self.as_json:
            typer.echo(json.dumps({"event": kind, **fields}, sort_keys=True))
        else:
            typer.echo(text)

    def line(self, text: str) -> None:
        if not self.as_json:
            typer.echo(text)

    def error(self, text: str) -> None:
        typer.echo(f"cooee-agent: error: {text}", err=True)
