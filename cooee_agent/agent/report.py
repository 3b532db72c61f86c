"""What the daemon says about itself: the status.json record and systemd's STATUS= line."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from cooee_agent.agent.enrolling import iso
from cooee_agent.agent.state import STATUS_SCHEMA
from cooee_agent.errors import CooeeError

if TYPE_CHECKING:
    from cooee_agent.agent.daemon import AgentDaemon


def status_record(daemon: AgentDaemon, *, now: float, stopped: bool = False) -> dict[str, Any]:
    """The status.json record (schema ``cooee-agent/status``) that ``cooee-agent status`` reads;
    ``now`` is the wall-clock time."""
    transport, assignment, identity = daemon.transport, daemon.assignment, daemon.identity
    peers: list[str] = []
    drops: dict[str, int] = {}
    if transport is not None:
        try:
            peers = transport.peers()
            # Only the mesh transport counts what its node dropped.
            drops = getattr(transport, "drop_counts", dict)()
        except CooeeError:
            peers = []
    return {
        "schema": STATUS_SCHEMA,
        "pid": os.getpid(),
        "running": not stopped,
        "updated_at": now,
        "updated": iso(now),
        "enrolment": daemon.enrolment_state,
        "agent_id": getattr(getattr(daemon, "keys", None), "agent_id", None),
        "key_fingerprint": _key_fingerprint(daemon),
        "peer_id": transport.peer_id if transport is not None else None,
        "host_id": assignment.host_id if assignment is not None else None,
        "hostname": identity.hostname if identity is not None else None,
        "tokens": [
            {"slot": s.slot, "gpu_id": s.gpu_id, "token": s.token}
            for s in (assignment.slots if assignment is not None else ())
        ],
        "agents": identity.agents if identity is not None else 0,
        "identity_error": daemon.identity_error,
        "state": daemon.state,
        "reasons": list(daemon.reasons),
        "peers": len(peers),
        "mesh_repairs": daemon.reach.repairs,
        "mesh_drops": drops,
        "last_heartbeat": daemon.last_heartbeat,
        "heartbeat_interval_s": daemon.config.heartbeat.interval,
        "outbox_depth": daemon.outbox.depth() if daemon.outbox is not None else None,
    }


def _key_fingerprint(daemon: AgentDaemon) -> str | None:
    """What the Leader's 'leader list' shows of this agent's key, to tell it from a squatter's."""
    keys = getattr(daemon, "keys", None)
    if keys is None:
        return None
    from cooee_agent.protocol import b64
    from cooee_agent.protocol.keys import key_fingerprint

    return key_fingerprint(b64.encode(keys.verify_key))


def status_line(daemon: AgentDaemon) -> str:
    """One line for systemd's STATUS=: enrolment, then the last heartbeat."""
    state, assignment = daemon.enrolment_state, daemon.assignment
    if assignment is not None:
        text = f"enrolled as host {assignment.host_id}, {len(assignment.slots)} slot(s)"
        if state != "enrolled":
            text += f" ({state} again)"
    elif daemon.identity_error is not None:
        text = f"no identity: {daemon.identity_error}"
    else:
        text = state
    last = daemon.last_heartbeat
    if last is not None:
        text += f", last heartbeat {last['at']} (seq {last['seq']}, {last['state']})"
    return text
