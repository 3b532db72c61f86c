"""The bounded read-only HTTP server, on real sockets on 127.0.0.1: methods, headers, the token,
the Host check, and its two bounds (connections at once, time to send a request)."""

from __future__ import annotations

import base64
import http.client
import socket
from collections.abc import Iterator, Mapping

import pytest

from cooee_agent.web.server import SECURITY_HEADERS, HttpService, Response

TOKEN = "s3cret-token-of-the-test-0123456789"


def router(path: str, query: Mapping[str, list[str]]) -> Response:
    if path == "/boom":
        raise RuntimeError("a bug in a route")
    return Response(200, f'{{"path": "{path}", "q": {sorted(query)!r}}}'.encode(), "text/plain")


@pytest.fixture
def open_server() -> Iterator[HttpService]:
    with HttpService("127.0.0.1:0", router).start() as service:
        yield service


@pytest.fixture
def token_server() -> Iterator[HttpService]:
    with HttpService("127.0.0.1:0", router, token=TOKEN).start() as service:
        yield service


def get(
    service: HttpService, path: str = "/", method: str = "GET", **headers: str
) -> tuple[int, dict[str, str], bytes, list[str]]:
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
    try:
        conn.request(method, path, headers=headers)
        answer = conn.getresponse()
        body = answer.read()
        challenges = answer.headers.get_all("WWW-Authenticate") or []
        return answer.status, dict(answer.getheaders()), body, challenges
    finally:
        conn.close()


def test_a_get_is_answered_with_every_security_header(open_server: HttpService) -> None:
    status, headers, body, _ = get(open_server, "/x?a=1")
    assert status == 200 and body == b'{"path": "/x", "q": [\'a\']}'
    for name, value in SECURITY_HEADERS:
        assert headers[name] == value
    assert "'unsafe-inline'" not in headers["Content-Security-Policy"]


def test_head_sends_the_headers_without_the_body(open_server: HttpService) -> None:
    status, headers, body, _ = get(open_server, "/x", method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_writes_are_refused_as_read_only(open_server: HttpService, method: str) -> None:
    status, headers, body, _ = get(open_server, "/x", method=method)
    assert status == 405 and headers["Allow"] == "GET, HEAD" and b"read-only" in body
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_a_failing_route_answers_500_without_its_traceback(open_server: HttpService) -> None:
    status, _, body, _ = get(open_server, "/boom")
    assert status == 500 and b"a bug" not in body and b"Traceback" not in body


def test_without_a_token_only_local_host_names_are_answered(open_server: HttpService) -> None:
    assert get(open_server, Host=f"127.0.0.1:{open_server.port}")[0] == 200
    assert get(open_server, Host=f"localhost:{open_server.port}")[0] == 200
    assert get(open_server, Host=f"[::1]:{open_server.port}")[0] == 200
    # A page of another site whose name was rebound to 127.0.0.1 sends its own name.
    status, _, body, _ = get(open_server, Host="attacker.example:8470")
    assert status == 421 and b"path" not in body


def test_a_request_without_the_token_gets_401_and_no_data(token_server: HttpService) -> None:
    status, headers, body, challenges = get(token_server, "/x")
    assert status == 401 and b"path" not in body
    assert any(c.startswith("Basic") for c in challenges)
    assert any(c.startswith("Bearer") for c in challenges)
    assert headers["Content-Security-Policy"] == dict(SECURITY_HEADERS)["Content-Security-Policy"]


@pytest.mark.parametrize(
    "authorization",
    [
        f"Bearer {TOKEN[:-1]}",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN.upper()}",
        "Bearer ",
        f"Token {TOKEN}",
        TOKEN,
        "Basic " + base64.b64encode(f"admin:{TOKEN[:-1]}".encode()).decode(),
        "Basic !!!not-base64",
    ],
)
def test_a_wrong_token_gets_401(token_server: HttpService, authorization: str) -> None:
    status, _, body, _ = get(token_server, "/x", Authorization=authorization)
    assert status == 401 and b"path" not in body


def test_the_token_opens_as_bearer_or_as_a_browser_basic_password(
    token_server: HttpService,
) -> None:
    assert get(token_server, "/x", Authorization=f"Bearer {TOKEN}")[0] == 200
    basic = base64.b64encode(f"operator:{TOKEN}".encode()).decode()
    assert get(token_server, "/x", Authorization=f"Basic {basic}")[0] == 200
    # With a token the Host check is not needed: the token is the proof.
    assert get(token_server, "/x", Authorization=f"Bearer {TOKEN}", Host="fleet.lab")[0] == 200


def test_connections_over_the_bound_are_answered_503_and_closed() -> None:
    with HttpService("127.0.0.1:0", router, max_connections=3).start() as service:
        held = [socket.create_connection(("127.0.0.1", service.port)) for _ in range(3)]
        try:
            # Each held connection has a thread of its own once it is accepted.
            for sock in held:
                sock.sendall(b"GET / HTTP/1.0\r\n")
            extra = socket.create_connection(("127.0.0.1", service.port), timeout=10)
            with extra:
                answer = extra.recv(4096)
            assert answer.startswith(b"HTTP/1.0 503 ")
            assert b"X-Content-Type-Options: nosniff" in answer
            assert service.refused >= 1
        finally:
            for sock in held:
                sock.close()


def test_a_slow_request_head_is_cut_off_at_the_deadline_and_its_slot_freed() -> None:
    with HttpService(
        "127.0.0.1:0", router, max_connections=1, head_deadline_s=0.5
    ).start() as service:
        slow = socket.create_connection(("127.0.0.1", service.port), timeout=30)
        with slow:
            slow.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finishes its head
            assert slow.recv(4096) == b""  # closed by the server, not by this client
        assert service.reaped == 1

        def answered() -> bool:  # the one slot is free again: a whole request gets its answer
            return get(service, "/again")[0] == 200

        assert _eventually(answered)


def _eventually(probe: object, tries: int = 50) -> bool:
    import time

    for _ in range(tries):
        try:
            if probe():  # type: ignore[operator]
                return True
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.1)
    return False
