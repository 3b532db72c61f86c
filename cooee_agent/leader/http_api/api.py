"""The Leader's routes: the JSON API (the CLI's ``--json``, from ``leader.readonly``),
``/metrics`` and the fleet page with its two assets. Everything is read-only."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from cooee_agent.errors import InputError
from cooee_agent.leader.readonly import NotFound, ReadOnlyState
from cooee_agent.web.server import Response, not_found

# The page and its assets: served by the Leader itself (no CDN, no build step).
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/fleet.js": ("fleet.js", "text/javascript; charset=utf-8"),
    "/fleet.css": ("fleet.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
_HOST = re.compile(r"/v1/hosts/([0-9]{1,4})")
_TOKEN = re.compile(r"/v1/tokens/([^/]{1,16})")


def json_response(value: Any, status: int = 200) -> Response:
    # The bytes ``emit_json`` prints for the CLI's --json: keys sorted, indented.
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return Response(status, text.encode("utf-8"))


def _error(status: int, error: str, detail: str) -> Response:
    return json_response({"error": error, "detail": detail}, status)


class LeaderRoutes:
    """The router ``HttpService`` calls, on its own threads: each request opens its own
    read-only connections (``ReadOnlyState``)."""

    def __init__(self, state_dir: Path, metrics: CollectorRegistry) -> None:
        self.state_dir = state_dir
        self.metrics = metrics
        fleet = resources.files(__package__).joinpath("fleet")
        self._assets = {
            path: (fleet.joinpath(name).read_bytes(), kind) for path, (name, kind) in ASSETS.items()
        }

    def __call__(self, path: str, query: Mapping[str, list[str]]) -> Response:
        if path in self._assets:
            body, kind = self._assets[path]
            return Response(200, body, kind)
        if path == "/metrics":
            return Response(200, generate_latest(self.metrics), CONTENT_TYPE_LATEST)
        if not path.startswith("/v1/"):
            return not_found(path)
        try:
            return json_response(self._api(path, query))
        except NotFound as error:
            return _error(404, "not found", str(error))
        except InputError as error:
            return _error(400, "bad request", str(error))

    def _api(self, path: str, query: Mapping[str, list[str]]) -> Any:
        with ReadOnlyState(self.state_dir) as state:
            if path == "/v1/hosts":
                return state.hosts_json()
            if path == "/v1/calls":
                everything = query.get("all", ["0"])[-1] in ("1", "true", "yes")
                return state.calls_json(include_closed=everything)
            if match := _HOST.fullmatch(path):
                return state.host_json(int(match.group(1)))
            if match := _TOKEN.fullmatch(path):
                return state.token_json(match.group(1))
        raise NotFound(f"no such resource: {path}")
