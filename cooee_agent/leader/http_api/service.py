"""Start and stop the Leader's HTTP server: the one call ``LeaderNode`` makes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cooee_agent.leader.http_api.api import LeaderRoutes
from cooee_agent.leader.http_api.metrics import leader_registry
from cooee_agent.leader.tally import HandledTally
from cooee_agent.web.auth import read_token_file
from cooee_agent.web.server import HttpService


def start_leader_http(
    state_dir: Path,
    bind: str,
    *,
    token_file: Path | None = None,
    tally: HandledTally | None = None,
    peers: Callable[[], int | None] | None = None,
) -> HttpService:
    """Serve the API, /metrics and the fleet page on ``bind`` (``HOST:PORT``) until closed.
    Raises ConfigError for a bad address, an unusable token file, or a non-loopback bind
    without a token."""
    token = read_token_file(token_file) if token_file is not None else None
    routes = LeaderRoutes(state_dir, leader_registry(state_dir, tally, peers))
    return HttpService(bind, routes, token=token, name="leader-http").start()
