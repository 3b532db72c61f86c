"""The Leader's HTTP API, /metrics and page against a real registry file, a real dispatcher (on a
MemoryBus) and real sockets on 127.0.0.1; the JSON is compared with the CLI's own ``--json``."""

from __future__ import annotations

import html.parser
import http.client
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from enrolment_factory import agent_keys
from prometheus_client.parser import text_string_to_metric_families
from test_leader_dispatch import Clock, World, call, enrolled, heartbeat

from cooee_agent.bus.memory import MemoryBus
from cooee_agent.identity import token as codec
from cooee_agent.leader.calls import CALLS_FILE, CallBook
from cooee_agent.leader.dispatch import Dispatcher, envelope_validator
from cooee_agent.leader.http_api.service import start_leader_http
from cooee_agent.leader.registrar import Registrar
from cooee_agent.protocol.keys import LeaderKeys
from cooee_agent.protocol.kinds import TOPIC_ASSIGNMENT, TOPIC_AVAILABILITY, TOPIC_INTERVENTION
from cooee_agent.web.server import HttpService

ENTRY = "from cooee_agent.cli import main; main()"


@dataclass
class Served:
    world: World
    http: HttpService

    def get(self, path: str) -> tuple[int, str, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.http.port, timeout=10)
        try:
            conn.request("GET", path)
            answer = conn.getresponse()
            return answer.status, answer.getheader("Content-Type") or "", answer.read()
        finally:
            conn.close()

    def json(self, path: str) -> Any:
        status, kind, body = self.get(path)
        assert status == 200 and kind == "application/json", body
        return json.loads(body)


def cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", ENTRY, *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def served(leader_dir: Path, leader_keys: LeaderKeys) -> Iterator[Served]:
    """Three hosts: two heard from (one with two slots), one enrolled but silent; one call."""
    bus = MemoryBus()
    clock = Clock()
    leader_transport = bus.join("leader", validator=envelope_validator)
    agent = bus.join("agent")
    with Registrar(leader_dir) as leader, CallBook(leader_dir / CALLS_FILE) as calls:
        service = Dispatcher(leader, leader_transport, calls=calls, clock=clock)
        world = World(bus, agent, service, clock, leader_keys, leader_dir)
        world.replies = agent.subscribe(TOPIC_ASSIGNMENT)
        keys = [agent_keys() for _ in range(3)]
        ids = [enrolled(world, k, host=n + 1) for n, k in enumerate(keys)]
        for seq in (1, 2, 4):  # seq 3 never arrives: one missed
            agent.publish(TOPIC_AVAILABILITY, heartbeat(keys[0], ids[0], seq, clock.now))
        agent.publish(TOPIC_AVAILABILITY, heartbeat(keys[1], ids[1], 1, clock.now, state="busy"))
        agent.publish(TOPIC_INTERVENTION, call(keys[1], "node0002.lab", ids[1], clock.now))
        service.drain()
        with start_leader_http(
            leader_dir, "127.0.0.1:0", tally=service.tally, peers=lambda: 3
        ) as http_service:
            yield Served(world, http_service)
        service.close()


def test_hosts_are_the_json_of_leader_list(served: Served) -> None:
    state_dir = str(served.world.state_dir)
    listed = cli("leader", "list", "--json", "--state-dir", state_dir)
    status, _, body = served.get("/v1/hosts")
    assert status == 200 and body.decode() == listed  # the same bytes: one code path
    hosts = json.loads(listed)
    assert [h["state"] for h in hosts] == ["online", "online", "unknown"]
    for host in hosts:
        assert served.json(f"/v1/hosts/{host['host_id']}") == host


def test_a_token_is_the_json_of_resolve(served: Served) -> None:
    hosts = served.json("/v1/hosts")
    token = hosts[1]["slots"][0]["token"]
    resolved = cli("resolve", token, "--json", "--state-dir", str(served.world.state_dir))
    assert served.get(f"/v1/tokens/{token}")[2].decode() == resolved
    assert served.json(f"/v1/tokens/{token.lower()}")["hostname"] == hosts[1]["hostname"]


def test_calls_are_the_json_of_leader_calls(served: Served) -> None:
    state_dir = str(served.world.state_dir)
    assert served.get("/v1/calls")[2].decode() == cli(
        "leader", "calls", "--json", "--state-dir", state_dir
    )
    (open_call,) = served.json("/v1/calls")
    assert open_call["reason"] == "gpu-lost" and open_call["hostname"] == "node0002.lab"
    assert served.json("/v1/calls?all=1") == [open_call]


@pytest.mark.parametrize(
    ("path", "status", "named"),
    [
        ("/v1/hosts/999", 404, "host_id 999"),
        ("/v1/tokens/4Z00A", 400, "token"),
        (f"/v1/tokens/{codec.encode(1, 999, 0)}", 404, "host_id 999"),
        ("/v1/submissions", 404, "no such resource"),
        ("/v1/hosts/abc", 404, "no such resource"),
        ("/etc/passwd", 404, ""),
        ("/../fleet.js", 404, ""),
    ],
)
def test_what_is_not_there_is_named(served: Served, path: str, status: int, named: str) -> None:
    got, kind, body = served.get(path)
    assert got == status and kind == "application/json"
    assert named in json.loads(body)["detail"]


def _metrics(served: Served) -> dict[str, list[Any]]:
    status, kind, body = served.get("/metrics")
    assert status == 200 and kind.startswith("text/plain; version=")
    families: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(body.decode()):
        families.setdefault(family.name, []).extend(family.samples)
    return families


def _value(samples: list[Any], **labels: str) -> float:
    found = [s.value for s in samples if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (labels, samples)
    return float(found[0])


def test_metrics_parse_and_match_leader_list(served: Served) -> None:
    hosts = json.loads(cli("leader", "list", "--json", "--state-dir", str(served.world.state_dir)))
    metrics = _metrics(served)

    for state in ("online", "offline", "left", "unknown"):
        expected = sum(1 for h in hosts if h["state"] == state)
        got = sum(s.value for s in metrics["cooee_leader_hosts"] if s.labels["state"] == state)
        assert got == expected, state
    assert _value(metrics["cooee_leader_slots"], state="available") == 1
    assert _value(metrics["cooee_leader_slots"], state="busy") == 1
    assert _value(metrics["cooee_leader_slots"], state="unknown") == 1

    for host in hosts:
        labels = {"host_id": str(host["host_id"]), "hostname": host["hostname"]}
        assert (
            _value(metrics["cooee_leader_heartbeats_heard"], **labels) == host["heartbeats_heard"]
        )
        assert (
            _value(metrics["cooee_leader_heartbeats_missed"], **labels) == host["heartbeats_missed"]
        )
        for slot in host["slots"]:
            announced = slot["availability"]
            if announced is None:
                continue
            slot_labels = {**labels, "slot": str(slot["slot"]), "token": slot["token"]}
            for name, key in (
                ("cooee_leader_gpu_memory_total_bytes", "memory_total"),
                ("cooee_leader_gpu_memory_free_bytes", "memory_free"),
                ("cooee_leader_gpu_utilisation_percent", "utilisation"),
            ):
                assert _value(metrics[name], **slot_labels) == announced[key]
    assert [h["heartbeats_missed"] for h in hosts] == [1, 0, 0]

    assert _value(metrics["cooee_leader_enrolments"], outcome="accepted") == 3
    assert _value(metrics["cooee_leader_calls_open"], severity="critical") == 1
    assert _value(metrics["cooee_leader_mesh_peers"]) == 3


def test_a_refused_enrolment_is_counted_by_its_reason(served: Served) -> None:
    world = served.world
    envelope = world.enrol(agent_keys(), host=9)
    world.service.drain()
    world.agent.publish("cooee/enrol/v1", envelope)  # the same envelope again: replayed
    world.service.drain()
    metrics = _metrics(served)
    assert _value(metrics["cooee_leader_enrolments"], outcome="accepted") == 4
    assert _value(metrics["cooee_leader_enrolments"], outcome="replayed") == 1


class _Page(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.links: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.inline += [name for name, _ in attrs if name.startswith("on") or name == "style"]
        if tag == "script":
            self.scripts.append(values)
            self._in_script = True
        if tag == "link" and values.get("href"):
            self.links.append(str(values["href"]))

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(data)


def test_the_page_loads_only_its_own_assets_and_no_inline_script(served: Served) -> None:
    status, kind, body = served.get("/")
    assert status == 200 and kind == "text/html; charset=utf-8"
    page = _Page()
    page.feed(body.decode())
    assert page.inline == []
    sources = [str(s["src"]) for s in page.scripts] + page.links
    assert sources and all(src.startswith("/") and not src.startswith("//") for src in sources)
    for src in sources:
        assert served.get(src)[0] == 200, src


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--http", "0.0.0.0:8470"], "--http-token-file"),
        (["--http", "localhost:8470"], "not an IP address"),
        (["--http", "127.0.0.1:99999"], "port"),
        (["--http-token-file", "/nonexistent"], "needs --http"),
        (["--http", "127.0.0.1:0", "--http-token-file", "/nonexistent"], "cannot read token"),
    ],
)
def test_serve_refuses_a_bad_http_flag_before_starting(
    leader_dir: Path, flags: list[str], named: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", ENTRY, "leader", "serve", "--state-dir", str(leader_dir), *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and named in done.stderr, done.stderr
    assert not (leader_dir / "leader.addrs").exists()  # the mesh never started
