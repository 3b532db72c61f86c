"""The running agent's DHT lookups for commands on its host: ``resolve --mesh`` asks the agent's
own node over a unix socket in the state directory instead of starting a node of its own.

Why: a node started for one lookup must import py-libp2p (about a second), then dial, identify
and open streams before its first get (tens of milliseconds more on a busy host). The running
node has its connections already, and usually a copy of the record.

The socket hands out only what the DHT hands any member: a record's signed, sealed bytes, which
the node's validator accepted. The command checks the signature and opens the record itself,
so it trusts this socket no more than it trusts a DHT peer. The socket is the agent's own file
(mode 0600, in the 0700 state directory), so only the service user and root reach it; they can
read the read key in that directory anyway.

Wire: one request line, ``{"get": <host_id>}``, then one answer line: ``{"value": "<base64>"}``,
``{"missing": true}`` or ``{"error": "<why>"}``; then the agent closes the connection.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import socket
import stat
import threading
from collections.abc import Callable
from pathlib import Path

from cooee_agent.identity.token import MAX_HOST_ID
from cooee_agent.protocol.host_records import MAX_HOST_RECORD_BYTES, host_key

log = logging.getLogger(__name__)

SOCKET_FILE = "agent.sock"

# Bounds, each with a test. A request is ``{"get": 1023}``: 13 bytes.
MAX_REQUEST_BYTES = 256
# Answers are a record in base64 (4/3 of its bytes) and a few bytes of JSON around it.
MAX_ANSWER_BYTES = MAX_HOST_RECORD_BYTES * 4 // 3 + 256
MAX_CLIENTS = 4  # lookups answered at once; a fifth caller is told the agent is busy
REQUEST_TIMEOUT_S = 1.0  # for the request line, so a silent caller cannot hold a place
ACCEPT_POLL_S = 0.25  # how soon the server notices that the mesh has closed
# A refused caller's extra bytes read before closing, so the refusal reaches it (see _reply).
DRAIN_BYTES = 64 * 1024
DRAIN_S = 0.1


def socket_path(state_dir: Path) -> Path:
    return Path(state_dir) / SOCKET_FILE


class LookupRequestError(ValueError):
    """A request line that is not ``{"get": <host_id>}``; the message says what was wrong."""


def parse_request(line: bytes) -> int:
    """The host_id a request line asks for."""
    try:
        request = json.loads(line)
    except (UnicodeDecodeError, ValueError):
        raise LookupRequestError(
            'the request is not one line of JSON: {"get": <host_id>}'
        ) from None
    if not isinstance(request, dict) or set(request) != {"get"}:
        raise LookupRequestError('the request must be an object with one key, "get"')
    host_id = request["get"]
    if type(host_id) is not int or not 0 <= host_id <= MAX_HOST_ID:
        raise LookupRequestError(f'"get" must be a host_id, an integer from 0 to {MAX_HOST_ID}')
    return host_id


def read_line(conn: socket.socket, limit: int) -> bytes:
    """Bytes up to the first newline (or the end), at most ``limit`` of them."""
    data = b""
    while b"\n" not in data:
        chunk = conn.recv(min(65536, limit + 1 - len(data)))
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise LookupRequestError(f"the line is over {limit} bytes")
    return data.split(b"\n", 1)[0]


class LookupSocket:
    """Serves ``get`` (the node's ``dht_get``) on ``path`` while ``alive()`` holds."""

    def __init__(
        self,
        get: Callable[[str], bytes | None],
        path: Path,
        *,
        alive: Callable[[], bool],
        max_clients: int = MAX_CLIENTS,
        request_timeout: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self._get = get
        self.path = Path(path)
        self._alive = alive
        self._places = threading.BoundedSemaphore(max_clients)
        self._request_timeout = request_timeout
        self._listener: socket.socket | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="cooee-lookup", daemon=True)

    def start(self) -> bool:
        """Listen, and serve on a thread of its own; False (logged) when the socket cannot be
        made, in which case ``resolve --mesh`` starts a node of its own as before."""
        try:
            self._listener = self._listen()
        except OSError as error:
            log.warning("not serving local DHT lookups at %s: %s", self.path, error)
            return False
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def _listen(self) -> socket.socket:
        if os.path.lexists(self.path):
            if not stat.S_ISSOCK(os.lstat(self.path).st_mode):
                raise OSError(f"{self.path} exists and is not a socket")
            self.path.unlink()  # an earlier run's, which nobody serves any longer
        # Bound under a private name, made 0600, then renamed into place: no caller ever sees
        # the socket with the mode bind() gave it.
        staging = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(staging))
            os.chmod(staging, 0o600)
            os.rename(staging, self.path)
            listener.listen(MAX_CLIENTS * 2)
            listener.settimeout(ACCEPT_POLL_S)
        except OSError:
            listener.close()
            with contextlib.suppress(OSError):
                staging.unlink()
            raise
        return listener

    def _serve(self) -> None:
        assert self._listener is not None
        try:
            while self._alive() and not self._stopped.is_set():
                try:
                    conn, _ = self._listener.accept()
                except TimeoutError:
                    continue
                except OSError as error:
                    log.warning("local DHT lookups stopped: %s", error)
                    return
                if not self._places.acquire(blocking=False):
                    # Answered here without waiting on the caller: what it has sent is read
                    # only if it is there already.
                    conn.setblocking(False)
                    with contextlib.suppress(OSError):
                        conn.recv(MAX_REQUEST_BYTES)
                    self._reply(conn, {"error": "the agent is busy with other lookups"})
                    continue
                threading.Thread(
                    target=self._answer, args=(conn,), name="cooee-lookup-answer", daemon=True
                ).start()
        finally:
            self._listener.close()
            with contextlib.suppress(OSError):
                self.path.unlink()

    def _answer(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(self._request_timeout)
            try:
                host_id = parse_request(read_line(conn, MAX_REQUEST_BYTES))
            except (LookupRequestError, OSError) as error:
                self._reply(conn, {"error": f"refused: {error}"}, drain=True)
                return
            # The node's own deadline bounds the lookup; the caller waits for it.
            conn.settimeout(None)
            try:
                value = self._get(host_key(host_id))
            except Exception as error:  # the node stopping under a lookup, mostly
                log.debug("a local DHT lookup of %d failed: %s", host_id, error)
                self._reply(conn, {"error": f"the agent's DHT lookup failed: {error}"})
                return
            if value is None:
                self._reply(conn, {"missing": True})
            else:
                self._reply(conn, {"value": base64.b64encode(value).decode("ascii")})
        finally:
            self._places.release()

    @staticmethod
    def _reply(conn: socket.socket, answer: dict[str, object], *, drain: bool = False) -> None:
        """Send ``answer`` and close. ``drain``: first read (a bounded amount of) what the
        caller sent beyond its request, since closing on unread bytes resets the connection,
        and the caller would lose the answer that says what was wrong."""
        with conn:
            try:
                conn.sendall(json.dumps(answer).encode() + b"\n")
                if drain:
                    conn.shutdown(socket.SHUT_WR)
                    conn.settimeout(DRAIN_S)
                    left = DRAIN_BYTES
                    while left > 0 and (chunk := conn.recv(min(left, 65536))):
                        left -= len(chunk)
            except OSError as error:  # the caller gave up, or kept sending: nothing to tell it
                log.debug("a local DHT lookup's caller left: %s", error)


class AgentUnavailable(Exception):
    """The running agent did not answer the lookup (not running, no socket, busy, a bad
    answer); the message says which. The caller looks the record up itself."""


def ask_running_agent(state_dir: Path, host_id: int, *, timeout: float) -> bytes | None:
    """The record bytes the local agent's node holds or found for ``host_id``, or None when it
    found none."""
    path = socket_path(state_dir)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(timeout)
        conn.connect(str(path))
        # A busy agent answers and closes without reading: its answer is still there to read.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.sendall(json.dumps({"get": host_id}).encode() + b"\n")
        line = read_line(conn, MAX_ANSWER_BYTES)
    except (OSError, LookupRequestError) as error:
        raise AgentUnavailable(f"no answer from the agent at {path}: {error}") from None
    finally:
        conn.close()
    return _parse_answer(line)


def _parse_answer(line: bytes) -> bytes | None:
    try:
        answer = json.loads(line)
    except (UnicodeDecodeError, ValueError):
        raise AgentUnavailable("the agent's answer is not a line of JSON") from None
    if answer == {"missing": True}:
        return None
    if isinstance(answer, dict) and set(answer) == {"error"}:
        raise AgentUnavailable(f"the agent says: {answer['error']}")
    if not isinstance(answer, dict) or set(answer) != {"value"}:
        raise AgentUnavailable('the agent\'s answer is none of "value", "missing" or "error"')
    try:
        return base64.b64decode(str(answer["value"]), validate=True)
    except (binascii.Error, ValueError):
        raise AgentUnavailable("the agent's value is not base64") from None
