"""Helpers for discovery tests: a real Ollama-speaking HTTP server and the network fixtures."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
OLLAMA_FIXTURES = FIXTURES / "ollama"
NETWORK_FIXTURES = FIXTURES / "network"
_ROUTES = {"/api/version": "version.json", "/api/tags": "tags.json", "/api/ps": "ps.json"}


@dataclass
class OllamaServer:
    """A local server answering the Ollama API from one fixture directory."""

    directory: Path
    server: ThreadingHTTPServer
    requests: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_ollama_server(directory: Path) -> OllamaServer:
    state: dict[str, OllamaServer] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state["server"].requests.append(self.path)
            name = _ROUTES.get(self.path)
            path = directory / name if name else None
            if path is None or not path.is_file():
                body = b"404 page not found"
                self.send_response(404)
                self.send_header("Content-Type", "text/plain")
            else:
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    server = OllamaServer(directory, httpd)
    state["server"] = server
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return server


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def load_gateways(layout: str) -> dict[Any, Any]:
    """gateways.json back in netifaces.gateways() shape (family constants as ints)."""
    raw = json.loads((NETWORK_FIXTURES / layout / "gateways.json").read_text())
    families = {"AF_INET": socket.AF_INET, "AF_INET6": socket.AF_INET6}
    result: dict[Any, Any] = {}
    for key, value in raw.items():
        if key == "default":
            result["default"] = {families[f]: tuple(entry) for f, entry in value.items()}
        else:
            result[families[key]] = [tuple(entry) for entry in value]
    return result


def load_permaddr(layout: str) -> dict[str, str]:
    return json.loads((NETWORK_FIXTURES / layout / "permaddr.json").read_text())
