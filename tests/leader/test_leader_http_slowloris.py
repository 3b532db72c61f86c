"""Slowloris against the Leader's HTTP server, in the Leader's own process: 200 connections
that never finish their request head, while the dispatcher (its real loop, on its own thread)
answers an enrolment. The HTTP threads must not take the dispatcher's time."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from enrolment_factory import agent_keys, record

from cooee_agent.bus.memory import MemoryBus
from cooee_agent.leader.calls import CALLS_FILE, CallBook
from cooee_agent.leader.dispatch import Dispatcher, envelope_validator
from cooee_agent.leader.http_api.service import start_leader_http
from cooee_agent.leader.registrar import Registrar
from cooee_agent.protocol.keys import LeaderKeys
from cooee_agent.protocol.kinds import TOPIC_ASSIGNMENT, TOPIC_ENROL
from cooee_agent.protocol.sealing import open_assignment, seal_enrolment
from cooee_agent.web.server import MAX_CONNECTIONS

SLOW_CONNECTIONS = 200
ANSWER_WITHIN_S = 1.0  # the bound: an enrolment answered within 1 s under the attack


def test_200_half_open_connections_do_not_delay_an_enrolment(
    leader_dir: Path, leader_keys: LeaderKeys
) -> None:
    bus = MemoryBus()
    agent = bus.join("agent")
    replies = agent.subscribe(TOPIC_ASSIGNMENT)
    stop = threading.Event()
    with (
        Registrar(leader_dir) as registrar,
        CallBook(leader_dir / CALLS_FILE) as calls,
    ):
        dispatcher = Dispatcher(
            registrar, bus.join("leader", validator=envelope_validator), calls=calls
        )
        loop = threading.Thread(target=dispatcher.run, args=(stop,), daemon=True)
        loop.start()
        held: list[socket.socket] = []
        try:
            with start_leader_http(leader_dir, "127.0.0.1:0", tally=dispatcher.tally) as http:
                for _ in range(SLOW_CONNECTIONS):
                    sock = socket.create_connection(("127.0.0.1", http.port), timeout=10)
                    sock.sendall(b"GET /v1/hosts HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                    held.append(sock)
                # The attack in full: every slot held, the rest answered 503 and closed.
                deadline = time.monotonic() + 30
                while http.refused < SLOW_CONNECTIONS - MAX_CONNECTIONS:
                    assert time.monotonic() < deadline, f"only {http.refused} refused"
                    time.sleep(0.05)
                keys = agent_keys()
                envelope = seal_enrolment(record(keys, host=7), keys, leader_keys.bundle)
                started = time.monotonic()
                agent.publish(TOPIC_ENROL, envelope)
                answer = replies.get(timeout=30)
                elapsed = time.monotonic() - started
                assert answer is not None, "no assignment"
                assert open_assignment(answer.data, keys, leader_keys.bundle).host_id == 0
                assert elapsed < ANSWER_WITHIN_S, f"answered in {elapsed:.3f} s"
        finally:
            for sock in held:
                sock.close()
            stop.set()
            loop.join(10)
            dispatcher.close()


def test_200_slow_clients_cost_the_server_at_most_its_bound_of_threads(leader_dir: Path) -> None:
    before = threading.active_count()
    with start_leader_http(leader_dir, "127.0.0.1:0") as http:
        held = [socket.create_connection(("127.0.0.1", http.port)) for _ in range(SLOW_CONNECTIONS)]
        try:
            for sock in held:
                sock.sendall(b"GET / HTTP/1.1\r\n")
            deadline = time.monotonic() + 30
            while http.refused < SLOW_CONNECTIONS - MAX_CONNECTIONS and time.monotonic() < deadline:
                time.sleep(0.05)
            assert http.refused == SLOW_CONNECTIONS - MAX_CONNECTIONS
            # One thread per served connection, plus the acceptor and the reaper: never 200.
            assert threading.active_count() - before <= MAX_CONNECTIONS + 2
        finally:
            for sock in held:
                sock.close()
