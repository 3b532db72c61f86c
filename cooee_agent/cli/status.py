"""``cooee-agent status``: what the running agent last wrote to status.json, and the outbox.

A plain verb (argparse, no typer): operators and monitoring scripts run it often, and typer's
parameter handling imports pydantic, which alone took longer than the rest of the verb.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from cooee_agent.cli.config_paths import CONFIG_HELP, STATE_DIR_HELP, resolve_state_dir
from cooee_agent.cli.output import emit_json
from cooee_agent.cli.status_fields import checked

# The daemon rewrites status.json every loop turn (about a second); a discovery can hold a turn
# for a few seconds. Older than this, the file no longer describes a live agent.
STALE_AFTER = 30.0


def process_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True  # it exists, under another user (cooee-agent)
    return True


def read_status(state_dir: Path, now: float | None = None) -> dict[str, Any]:
    """status.json plus ``agent``: running, stale, stopped or absent; and the outbox depth."""
    from cooee_agent.agent.state import STATUS_FILE, read_json
    from cooee_agent.bus.outbox import OUTBOX_FILE

    now = time.time() if now is None else now
    status = read_json(state_dir / STATUS_FILE)
    if not isinstance(status, dict):
        status = {"agent": "absent"}
    else:
        status, dropped = checked(status)
        if dropped:
            status["status_error"] = (
                f"{state_dir / STATUS_FILE}: ignored field(s) of the wrong type: "
                + ", ".join(dropped)
            )
        age = now - float(status.get("updated_at") or 0)
        status["age_s"] = round(age, 1)
        if not status.get("running") or not process_alive(status.get("pid")):
            status["agent"] = "stopped"
        elif age > STALE_AFTER:
            status["agent"] = "stale"
        else:
            status["agent"] = "running"
    status["state_dir"] = str(state_dir)
    if (state_dir / OUTBOX_FILE).exists():
        import sqlite3

        try:
            uri = f"file:{state_dir / OUTBOX_FILE}?mode=ro"
            with sqlite3.connect(uri, uri=True, timeout=2.0) as db:
                status["outbox_depth"] = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        except sqlite3.Error as error:
            status["outbox_error"] = str(error)
    return status


HELP = "Show enrolment state, host_id, tokens, peers, last heartbeat and outbox depth."


def main(argv: list[str], prog: str) -> None:
    """Parse ``argv`` (what follows ``status``) and show the status; exit 1 unless the agent
    is running."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=f"{HELP}\n\nExits 0 when the agent is running, 1 when it is not (stopped, "
        "stale or never run).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help=CONFIG_HELP)
    parser.add_argument("--state-dir", type=Path, help=STATE_DIR_HELP)
    parser.add_argument("--json", action="store_true", help="Print a JSON object.")
    args = parser.parse_args(argv)
    status(args.config, args.state_dir, args.json)


def status(config: Path | None, state_dir: Path | None, as_json: bool) -> None:
    directory = resolve_state_dir(config, state_dir)
    value = read_status(directory)
    if as_json:
        emit_json(value)
    else:
        for line in render(value):
            print(line)
    if value["agent"] != "running":
        raise SystemExit(1)


def render(value: dict[str, Any]) -> list[str]:
    agent = value["agent"]
    if agent == "absent":
        return [f"no agent has run with state directory {value['state_dir']}"]
    lines = []
    if agent == "running":
        lines.append(f"agent: running (pid {value.get('pid')})")
    elif agent == "stale":
        lines.append(
            f"agent: NOT RESPONDING: pid {value.get('pid')} last wrote its status "
            f"{value['age_s']:.0f} s ago"
        )
    else:
        lines.append(f"agent: not running (last status {value.get('updated')})")
    lines.append(f"enrolment: {value.get('enrolment')}")
    if value.get("key_fingerprint"):
        lines.append(f"agent key: {value['key_fingerprint']} (as 'leader list' shows it)")
    if value.get("identity_error"):
        lines.append(f"identity: {value['identity_error']}")
    if value.get("host_id") is not None:
        lines.append(f"host_id: {value['host_id']} ({value.get('hostname')})")
    for token in value.get("tokens") or []:
        lines.append(f"  slot {token['slot']}: {token['token']}  {token['gpu_id']}")
    state = value.get("state")
    reasons = value.get("reasons") or []
    lines.append(f"state: {state}" + (f" ({'; '.join(reasons)})" if reasons else ""))
    lines.append(f"peers connected: {value.get('peers')}")
    drops = value.get("mesh_drops") or {}
    if drops:
        told = ", ".join(f"{count} {reason}" for reason, count in sorted(drops.items()))
        lines.append(f"mesh messages dropped since start: {told}")
    beat = value.get("last_heartbeat")
    lines.append(
        f"last heartbeat: {beat['at']} (seq {beat['seq']})" if beat else "last heartbeat: none"
    )
    if "outbox_depth" in value:
        lines.append(f"outbox depth: {value['outbox_depth']}")
    # Shown without --json too: a broken outbox or status file is what the operator must fix.
    if value.get("outbox_error"):
        lines.append(f"outbox: cannot read it: {value['outbox_error']}")
    if value.get("status_error"):
        lines.append(f"status file: {value['status_error']}")
    return lines
