"""The running agent's lookup socket, over real unix sockets: what it answers, what it refuses,
and every bound it holds (request size, silent callers, callers at once)."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from process_support import until

from cooee_agent.agent.lookup_socket import (
    MAX_ANSWER_BYTES,
    MAX_REQUEST_BYTES,
    AgentUnavailable,
    LookupRequestError,
    LookupSocket,
    ask_running_agent,
    parse_request,
    socket_path,
)
from cooee_agent.identity.token import MAX_HOST_ID
from cooee_agent.protocol.host_records import host_key

RECORD = b"\x00signed and sealed\xff" * 50


class Served:
    """A LookupSocket over a dict of records, stopped at the end of the test."""

    def __init__(self, state_dir: Path, **options: object) -> None:
        self.records: dict[str, bytes] = {host_key(7): RECORD}
        self.asked: list[str] = []
        self.running = True
        self.server = LookupSocket(
            self.get, socket_path(state_dir), alive=lambda: self.running, **options
        )

    def get(self, key: str) -> bytes | None:
        self.asked.append(key)
        return self.records.get(key)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    return state


@pytest.fixture
def served(state_dir: Path) -> Iterator[Served]:
    served = Served(state_dir)
    assert served.server.start()
    yield served
    served.server.stop()


def raw_exchange(path: Path, request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(10)
        conn.connect(str(path))
        conn.sendall(request)
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def test_a_held_record_comes_back_as_its_bytes(served: Served, state_dir: Path) -> None:
    assert ask_running_agent(state_dir, 7, timeout=5) == RECORD
    assert served.asked == ["/cooee/host/7"]


def test_a_record_the_node_lacks_is_answered_missing(served: Served, state_dir: Path) -> None:
    assert ask_running_agent(state_dir, 8, timeout=5) is None


def test_the_socket_is_the_service_users_alone(served: Served, state_dir: Path) -> None:
    mode = os.lstat(socket_path(state_dir)).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    assert sorted(p.name for p in state_dir.iterdir()) == ["agent.sock"]  # no staging name left


@pytest.mark.parametrize(
    ("request_line", "said"),
    [
        (b"hello\n", "not one line of JSON"),
        (b"\xff\xfe\n", "not one line of JSON"),
        (b"[7]\n", 'one key, "get"'),
        (b'{"get": 7, "put": 1}\n', 'one key, "get"'),
        (b'{"get": "7"}\n', "an integer from 0 to 1023"),
        (b'{"get": true}\n', "an integer from 0 to 1023"),
        (b'{"get": 7.0}\n', "an integer from 0 to 1023"),
        (b'{"get": -1}\n', "an integer from 0 to 1023"),
        (b'{"get": 1024}\n', "an integer from 0 to 1023"),
        (b'{"get": 7}' + b" " * MAX_REQUEST_BYTES + b"\n", f"over {MAX_REQUEST_BYTES} bytes"),
    ],
)
def test_a_malformed_request_is_refused_saying_what_was_wrong(
    served: Served, state_dir: Path, request_line: bytes, said: str
) -> None:
    answer = raw_exchange(socket_path(state_dir), request_line)
    assert answer.endswith(b"\n") and answer.count(b"\n") == 1
    (error,) = json.loads(answer).values()
    assert error.startswith("refused: ") and said in error, error
    assert served.asked == []  # nothing reached the node
    assert ask_running_agent(state_dir, 7, timeout=5) == RECORD  # and the next caller is served


def test_a_request_ended_without_its_newline_is_still_one_request(
    served: Served, state_dir: Path
) -> None:
    assert raw_exchange(socket_path(state_dir), b'{"get": 8}') == b'{"missing": true}\n'


def test_a_silent_caller_is_cut_off_while_others_are_served(state_dir: Path) -> None:
    served = Served(state_dir, max_clients=2, request_timeout=0.3)
    assert served.server.start()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
            silent.settimeout(10)
            silent.connect(str(socket_path(state_dir)))
            assert ask_running_agent(state_dir, 7, timeout=5) == RECORD
            answer = silent.recv(4096)  # sent nothing: told so once its time is up
            assert b"refused" in answer and b"timed out" in answer
        # Its place is given back: two callers at once are served again.
        until(lambda: served_at_once(state_dir, 2), "both places to be free")
    finally:
        served.server.stop()


def test_callers_beyond_the_limit_are_told_the_agent_is_busy(state_dir: Path) -> None:
    release = threading.Event()
    entered = threading.Event()
    served = Served(state_dir, max_clients=1)

    def slow_get(key: str) -> bytes | None:
        entered.set()
        release.wait(10)
        return RECORD

    served.server._get = slow_get
    assert served.server.start()
    try:
        first: list[bytes | None] = []

        def ask() -> None:
            first.append(ask_running_agent(state_dir, 7, timeout=10))

        caller = threading.Thread(target=ask)
        caller.start()
        assert entered.wait(10)
        with pytest.raises(AgentUnavailable, match="busy"):
            ask_running_agent(state_dir, 7, timeout=5)
        release.set()
        caller.join(10)
        assert first == [RECORD]
        until(lambda: served_again(state_dir), "the place to come back")
    finally:
        release.set()
        served.server.stop()


def served_again(state_dir: Path) -> bool:
    try:
        return ask_running_agent(state_dir, 7, timeout=5) == RECORD
    except AgentUnavailable as error:
        assert "busy" in str(error)
        return False


def served_at_once(state_dir: Path, callers: int) -> bool:
    """Whether ``callers`` asking at the same time are all served (none told busy)."""
    results: list[bool] = []

    def ask() -> None:
        results.append(served_again(state_dir))

    threads = [threading.Thread(target=ask) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results == [True] * callers


def test_a_failing_lookup_is_an_error_answer_and_serving_goes_on(
    served: Served, state_dir: Path
) -> None:
    def broken(key: str) -> bytes | None:
        raise RuntimeError("the mesh node has stopped")

    real = served.server._get
    served.server._get = broken
    with pytest.raises(AgentUnavailable, match="DHT lookup failed: the mesh node has stopped"):
        ask_running_agent(state_dir, 7, timeout=5)
    served.server._get = real
    assert ask_running_agent(state_dir, 7, timeout=5) == RECORD


def test_an_earlier_runs_socket_is_replaced(state_dir: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(socket_path(state_dir)))
    stale.close()  # the file stays, and nobody listens on it
    with pytest.raises(AgentUnavailable, match="no answer from the agent"):
        ask_running_agent(state_dir, 7, timeout=5)
    served = Served(state_dir)
    assert served.server.start()
    try:
        assert ask_running_agent(state_dir, 7, timeout=5) == RECORD
    finally:
        served.server.stop()


def test_a_file_that_is_not_a_socket_is_left_alone(
    state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    socket_path(state_dir).write_text("not mine to delete")
    served = Served(state_dir)
    with caplog.at_level(logging.WARNING):
        assert not served.server.start()
    assert "exists and is not a socket" in caplog.text
    assert socket_path(state_dir).read_text() == "not mine to delete"


def test_a_path_too_long_for_a_socket_is_a_warning_not_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    served = Served(deep)
    with caplog.at_level(logging.WARNING):
        assert not served.server.start()
    assert "not serving local DHT lookups" in caplog.text
    assert not socket_path(deep).exists()
    with pytest.raises(AgentUnavailable):
        ask_running_agent(deep, 7, timeout=5)


def test_serving_ends_with_the_mesh_and_takes_the_socket_away(
    served: Served, state_dir: Path
) -> None:
    served.running = False
    until(lambda: not socket_path(state_dir).exists(), "the socket to go")
    with pytest.raises(AgentUnavailable, match="no answer from the agent"):
        ask_running_agent(state_dir, 7, timeout=5)


def test_no_agent_running_is_unavailable_not_an_error(state_dir: Path) -> None:
    with pytest.raises(AgentUnavailable, match=r"no answer from the agent at .*agent\.sock"):
        ask_running_agent(state_dir, 7, timeout=5)


class OneAnswer:
    """A socket at the agent's path that answers every caller with ``answer``: a broken or
    impostor agent, from the command's side."""

    def __init__(self, path: Path, answer: bytes) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(1)
        self.answer = answer
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.recv(1024)
            conn.sendall(self.answer)

    def close(self) -> None:
        self.thread.join(10)
        self.listener.close()


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (b"<html>\n", "not a line of JSON"),
        (b'{"value": "***"}\n', "not base64"),
        (b'{"value": 7}\n', "not base64"),
        (b'{"found": true}\n', 'none of "value", "missing" or "error"'),
        (b'{"missing": false}\n', 'none of "value", "missing" or "error"'),
        (b'{"error": "shutting down"}\n', "the agent says: shutting down"),
        (b'{"value": "' + b"A" * MAX_ANSWER_BYTES + b'"}\n', f"over {MAX_ANSWER_BYTES} bytes"),
        (b"", "not a line of JSON"),
    ],
)
def test_a_bad_answer_leaves_the_command_to_look_itself(
    state_dir: Path, answer: bytes, said: str
) -> None:
    agent = OneAnswer(socket_path(state_dir), answer)
    try:
        with pytest.raises(AgentUnavailable) as raised:
            ask_running_agent(state_dir, 7, timeout=5)
    finally:
        agent.close()
    assert said in str(raised.value)


@given(st.binary(max_size=MAX_REQUEST_BYTES))
def test_any_request_line_is_a_host_id_or_a_refusal(line: bytes) -> None:
    try:
        host_id = parse_request(line)
    except LookupRequestError as error:
        assert str(error)
    else:
        assert 0 <= host_id <= MAX_HOST_ID


@given(st.integers(0, MAX_HOST_ID))
def test_every_host_id_the_command_sends_is_read_back(host_id: int) -> None:
    assert parse_request(json.dumps({"get": host_id}).encode()) == host_id


def test_a_caller_that_floods_is_cut_off_after_a_bounded_read(
    served: Served, state_dir: Path
) -> None:
    flood_ended: list[str] = []

    def flood() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(10)
            conn.connect(str(socket_path(state_dir)))
            try:
                conn.sendall(b"x" * (16 * 1024 * 1024))
                flood_ended.append("sent")
            except OSError as error:  # the agent closed on it
                flood_ended.append(type(error).__name__)

    flooder = threading.Thread(target=flood)
    flooder.start()
    flooder.join(30)
    assert flood_ended and flood_ended != ["sent"], flood_ended
    assert served.asked == []
    assert ask_running_agent(state_dir, 7, timeout=5) == RECORD


def test_the_socket_goes_when_the_mesh_closes_not_a_poll_later(state_dir: Path) -> None:
    from cooee_agent.bus.mesh_config import MeshConfig
    from cooee_agent.bus.mesh_transport import start_mesh

    transport = start_mesh(
        MeshConfig(state_dir=state_dir / "mesh", listen=("/ip4/127.0.0.1/tcp/0",), topics=())
    )
    server = LookupSocket(transport.dht_get, socket_path(state_dir), alive=lambda: transport.alive)
    assert server.start()
    failing_stops: list[str] = []

    def failing_stop() -> None:
        failing_stops.append("called")
        raise RuntimeError("a companion that fails to stop")

    transport.on_close(failing_stop)
    transport.on_close(server.stop)
    transport.close()
    # Gone by the time close returns (the accept loop alone would notice up to a poll later),
    # and a companion that failed to stop kept neither the others nor the node running.
    assert not socket_path(state_dir).exists()
    assert failing_stops == ["called"]
    assert not transport.alive
