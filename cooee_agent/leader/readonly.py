"""The Leader's state as operators read it: hosts, one host, a token, calls, as JSON values.

One code path for every reader: ``leader list --json``, ``resolve --json``, ``leader calls
--json`` and the HTTP API all build their JSON here, so they cannot drift apart. Each reader
opens its own read-only connection (``ReadOnlyState``): SQLite connections belong to one
thread, the files are in WAL mode so reading never blocks the dispatcher's writes, and a
read-only connection cannot write by mistake.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import TracebackType
from typing import Any

from cooee_agent.errors import CooeeError
from cooee_agent.leader.calls import CALLS_FILE, Call, call_from_row
from cooee_agent.leader.registry import REGISTRY_FILE, views
from cooee_agent.leader.registry.views import HostView
from cooee_agent.protocol.records import issued_token

# Seconds a read waits for a writer's lock (only a checkpoint takes one a reader must wait for).
READ_BUSY_TIMEOUT_S = 5.0


class NotFound(CooeeError):
    """What was asked for is not in the registry (HTTP 404, CLI exit 1)."""


def _open(path: Path) -> sqlite3.Connection | None:
    if not path.exists():
        return None
    db = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=READ_BUSY_TIMEOUT_S
    )
    db.row_factory = sqlite3.Row
    return db


class ReadOnlyState:
    """Read-only connections to the registry and the call book of one state directory, for
    the thread that opened it. A file not created yet reads as empty."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._registry = _open(state_dir / REGISTRY_FILE)
        self._calls = _open(state_dir / CALLS_FILE)

    def close(self) -> None:
        for db in (self._registry, self._calls):
            if db is not None:
                db.close()

    def __enter__(self) -> ReadOnlyState:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    # -- views ---------------------------------------------------------------------------------

    def host_views(self) -> list[HostView]:
        return [] if self._registry is None else views.hosts(self._registry)

    def host_view(self, host_id: int) -> HostView | None:
        return None if self._registry is None else views.host_by_id(self._registry, host_id)

    def call_list(self, *, include_closed: bool = False) -> list[Call]:
        if self._calls is None:
            return []
        where = "" if include_closed else "WHERE status = 'open'"
        rows = self._calls.execute(f"SELECT * FROM calls {where} ORDER BY id").fetchall()
        return [call_from_row(row) for row in rows]

    # -- JSON ----------------------------------------------------------------------------------

    def hosts_json(self) -> list[dict[str, Any]]:
        return [host.to_dict() for host in self.host_views()]

    def host_json(self, host_id: int) -> dict[str, Any]:
        host = self.host_view(host_id)
        if host is None:
            raise NotFound(f"no host has host_id {host_id}")
        return host.to_dict()

    def calls_json(self, *, include_closed: bool = False) -> list[dict[str, Any]]:
        return [c.to_dict() for c in self.call_list(include_closed=include_closed)]

    def token_json(self, token: str) -> dict[str, Any]:
        """The host, GPU slot and agent tuples a token names (raises TokenError, NotFound)."""
        decoded = issued_token(token)
        host = self.host_view(decoded.host_id)
        if host is None:
            raise NotFound(
                f"token {decoded.text} names host_id {decoded.host_id}, which no host has"
            )
        slot = next((s for s in host.slots if s["slot"] == decoded.gpu_slot), None)
        if slot is None:
            raise NotFound(
                f"token {decoded.text} names slot {decoded.gpu_slot} of {host.hostname}, "
                "which has no such slot"
            )
        agents = [a for a in host.agents if a["slot"] == decoded.gpu_slot]
        return {
            "token": decoded.text,
            "host_id": host.host_id,
            "hostname": host.hostname,
            "mac": host.mac,
            "status": host.status,
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
