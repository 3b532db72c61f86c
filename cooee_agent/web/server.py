"""The HTTP server: GET and HEAD only, every connection bounded in number and in the time it may
take to send its request, a token checked when one is set, security headers on every answer.

It runs beside the process's real work (the Leader's dispatcher, the agent's main loop) on
threads of its own that only read: a client that holds many slow connections uses up this
server's connection slots, never the mesh's or the heartbeat's time.

    service = HttpService("127.0.0.1:8470", router, token=None).start()
    ...
    service.close()
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cooee_agent.web.auth import (
    is_loopback,
    parse_bind,
    presented_token,
    require_token_rule,
    tokens_equal,
)

log = logging.getLogger(__name__)

# Connections served at once; one more is answered 503 and closed without a thread. A scraper
# and a few browsers need a handful: the rest of the bound is head-room for a burst.
MAX_CONNECTIONS = 64
# Seconds a connection may take to send its whole request line and headers (slowloris): a
# client trickling bytes is cut off at this deadline, however often it sends one.
HEAD_DEADLINE_S = 10.0
# Seconds any single read or write may wait (a client that stops reading its answer).
IO_TIMEOUT_S = 10.0
# Connections the kernel queues for accept() (listen backlog).
LISTEN_BACKLOG = 256
# How often the reaper looks for connections past their deadline.
REAP_EVERY_S = 0.5

SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
)
_BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\n"
    b"Connection: close\r\n"
    + b"".join(f"{k}: {v}\r\n".encode("ascii") for k, v in SECURITY_HEADERS)
    + b"\r\n"
)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


# path, query -> answer; a router raises nothing for what a client asked (it answers 4xx).
Router = Callable[[str, Mapping[str, list[str]]], Response]


def not_found(what: str) -> Response:
    return Response(404, f'{{"error": "not found", "detail": {_quote(what)}}}\n'.encode())


def _quote(text: str) -> str:
    import json

    return json.dumps(text)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The listen backlog: a burst of connects waits here for accept() instead of being dropped
    # by the kernel (socketserver's default of 5 makes a client retry its SYN a second later).
    request_queue_size = LISTEN_BACKLOG
    block_on_close = False  # close() must not wait for a slow client
    service: HttpService

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.service._slots.acquire(blocking=False):
            self.service.refused += 1
            with contextlib.suppress(OSError):
                request.settimeout(0)
                request.sendall(_BUSY)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.service._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.service._forget(request)
            self.service._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("HTTP connection from %s failed", client_address, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = IO_TIMEOUT_S
    server_version = "cooee-agent"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.server.service._watch(self.connection)

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        # The head is in: from here only IO_TIMEOUT_S applies.
        self.server.service._forget(self.connection)
        return parsed

    def end_headers(self) -> None:
        for name, value in SECURITY_HEADERS:
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _refuse_method(self) -> None:
        self._send(
            Response(
                405,
                b'{"error": "read-only: GET and HEAD only"}\n',
                headers=(("Allow", "GET, HEAD"),),
            ),
            head=False,
        )

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method

    def _answer(self, *, head: bool) -> None:
        service = self.server.service
        refusal = service.refusal(self.headers.get("Host"), self.headers.get("Authorization"))
        if refusal is not None:
            self._send(refusal, head=head)
            return
        url = urlsplit(self.path)
        try:
            response = service.router(url.path, parse_qs(url.query))
        except Exception:
            log.exception("HTTP %s failed", url.path)
            response = Response(500, b'{"error": "internal error; see the log"}\n')
        self._send(response, head=head)

    def _send(self, response: Response, *, head: bool) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(response.body)


class HttpService:
    """One listening socket and its threads. ``token`` None: no authentication, allowed on a
    loopback address only (and then requests must name a local Host, against DNS rebinding)."""

    def __init__(
        self,
        bind: str,
        router: Router,
        *,
        token: str | None = None,
        max_connections: int = MAX_CONNECTIONS,
        head_deadline_s: float = HEAD_DEADLINE_S,
        name: str = "http",
    ) -> None:
        host, port = parse_bind(bind)
        require_token_rule(host, token)
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.router = router
        self.token = token
        self.name = name
        self.head_deadline_s = head_deadline_s
        self.refused = 0  # connections answered 503: over max_connections
        self.reaped = 0  # connections cut off for not sending their request in time
        self._slots = threading.BoundedSemaphore(max_connections)
        self._pending: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = (_Server6 if ":" in host else _Server)((host, port), _Handler)
        self._server.service = self
        self._host = host
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def start(self) -> HttpService:
        for target, suffix in ((self._server.serve_forever, "serve"), (self._reap, "reaper")):
            thread = threading.Thread(target=target, name=f"{self.name}-{suffix}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("%s: serving on %s", self.name, self.url)
        return self

    def close(self) -> None:
        self._stop.set()
        if self._threads:
            self._server.shutdown()
        self._server.server_close()
        with self._lock:
            pending = list(self._pending)
            self._pending.clear()
        for sock in pending:
            _cut(sock)
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> HttpService:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- who may read --------------------------------------------------------------------------

    def refusal(self, host_header: str | None, authorization: str | None) -> Response | None:
        """None when the request may be answered; else the 401 or 421 to send instead."""
        if self.token is None:
            if not _local_host(host_header):
                return Response(421, b'{"error": "this server answers local names only"}\n')
            return None
        given = presented_token(authorization)
        if given is None or not tokens_equal(given, self.token):
            return Response(
                401,
                b'{"error": "unauthorized: send Authorization: Bearer <token>"}\n',
                headers=(
                    ("WWW-Authenticate", 'Basic realm="cooee", charset="UTF-8"'),
                    ("WWW-Authenticate", 'Bearer realm="cooee"'),
                ),
            )
        return None

    # -- slow clients --------------------------------------------------------------------------

    def _watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._pending[sock] = time.monotonic() + self.head_deadline_s

    def _forget(self, sock: socket.socket) -> None:
        with self._lock:
            self._pending.pop(sock, None)

    def _reap(self) -> None:
        while not self._stop.wait(REAP_EVERY_S):
            now = time.monotonic()
            with self._lock:
                late = [s for s, deadline in self._pending.items() if deadline <= now]
                for sock in late:
                    del self._pending[sock]
            for sock in late:
                self.reaped += 1
                _cut(sock)


def _cut(sock: socket.socket) -> None:
    # shutdown() wakes the handler thread blocked in recv(); it then closes the socket itself.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _local_host(header: str | None) -> bool:
    """The Host a browser sent names this machine: a loopback IP or ``localhost``. A page of
    another site that rebinds its name to 127.0.0.1 still sends its own name, and is refused."""
    if not header:
        return True  # HTTP/1.0 clients (curl -0, scrapers) may send none; no browser does
    host = header.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    else:
        host = host.rpartition(":")[0] if host.count(":") == 1 else host
    if host in ("localhost", "localhost."):
        return True
    try:
        return is_loopback(host)
    except ValueError:
        return False
