"""The daemon in-process over a MemoryBus, with the real ingest pipeline as its Leader."""

from __future__ import annotations

import dataclasses
import json
import logging
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_support import FakeHost, StandInLeader, agent_config, gpu

from cooee_agent.agent.daemon import AgentDaemon
from cooee_agent.agent.enrolling import ENROL_KEY
from cooee_agent.agent.enrolment_record import build_enrolment
from cooee_agent.agent.watchdog import WatchdogPinger
from cooee_agent.bus.memory import MemoryBus
from cooee_agent.bus.outbox import Outbox
from cooee_agent.bus.transport import Message
from cooee_agent.config import Config, HeartbeatConfig
from cooee_agent.discovery.inventory import agent_tuples
from cooee_agent.discovery.model import ProbeFailure
from cooee_agent.errors import ConfigError
from cooee_agent.protocol import (
    load_or_create_agent_keys,
    parse_bundle,
    seal_enrolment,
)
from cooee_agent.protocol.kinds import TOPIC_ASSIGNMENT, TOPIC_ENROL

TICK = 0.02


class Recorder:
    """A Notifier stand-in that keeps what would have gone to systemd."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def notify(self, *assignments: str) -> bool:
        self.messages.append("\n".join(assignments))
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", f"STATUS={status}")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1")

    def reloading(self) -> bool:
        return self.notify("RELOADING=1")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what or predicate}")


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.bus = MemoryBus()
        self.tmp = tmp_path
        self.leader = StandInLeader(tmp_path / "leader", self.bus.join("leader"))
        self.host = FakeHost()
        self.state_dir = tmp_path / "agent"
        self.daemons: list[tuple[AgentDaemon, threading.Thread]] = []
        self.notifier = Recorder()
        self.pings: list[float] = []

    def config(self, **changes: Any) -> Config:
        return agent_config(self.state_dir, self.leader.bundle, **changes)

    def start(self, config: Config | None = None, **options: Any) -> AgentDaemon:
        joined = len(self.daemons)
        options.setdefault("pinger", lambda progress: None)
        options.setdefault("transport_factory", lambda cfg: self.bus.join(f"agent-{joined}"))
        daemon = AgentDaemon(
            config or self.config(),
            discover=self.host.discover,
            usage=self.host.usage,
            notifier=self.notifier,  # type: ignore[arg-type]
            tick=TICK,
            resend_base=0.2,
            **options,
        )
        thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False})
        thread.start()
        self.daemons.append((daemon, thread))
        wait_until(lambda: daemon.started.is_set() or not thread.is_alive(), what="start")
        assert thread.is_alive(), "the daemon stopped during start"
        return daemon

    def stop(self, daemon: AgentDaemon) -> None:
        for known, thread in self.daemons:
            if known is daemon:
                daemon.stop()
                thread.join(10)
                assert not thread.is_alive()

    def close(self) -> None:
        for daemon, thread in self.daemons:
            daemon.stop()
            thread.join(10)
        self.leader.close()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    value = Harness(tmp_path)
    yield value
    value.close()


def enrolled(daemon: AgentDaemon) -> bool:
    return daemon.enrolment_state == "enrolled"


def test_enrols_stores_assignment_heartbeats_and_leaves(harness: Harness) -> None:
    daemon = harness.start()
    wait_until(lambda: enrolled(daemon), what="enrolment")
    stored = harness.state_dir / "assignment.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    value = json.loads(stored.read_text())["assignment"]
    assert value["host_id"] == daemon.assignment.host_id
    assert [s["slot"] for s in value["slots"]] == [0]
    assert daemon.outbox is not None and daemon.outbox.get(ENROL_KEY) is None

    wait_until(lambda: len(harness.leader.availability) >= 3, what="three heartbeats")
    beats = [r for r in harness.leader.availability if r["kind"] == "availability"]
    seqs = [r["seq"] for r in beats]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    slot = beats[0]["slots"][0]
    assert slot["state"] == "available"
    assert slot["token"] == daemon.assignment.slots[0].token
    assert slot["memory_total"] == 80 * 2**30 and slot["utilisation"] == 10
    assert slot["models_installed"] == ["llama3:8b"]
    assert any(m.startswith("READY=1") for m in harness.notifier.messages)

    harness.stop(daemon)
    last = harness.leader.availability[-1]
    assert last["kind"] == "leaving" and last["seq"] > seqs[-1]
    assert "STOPPING=1" in harness.notifier.messages
    assert len(harness.leader.accepted()) == 1


def test_status_file_says_what_the_agent_is_doing(harness: Harness) -> None:
    daemon = harness.start()
    wait_until(lambda: daemon.last_heartbeat is not None, what="heartbeat")
    time.sleep(5 * TICK)
    status = json.loads((harness.state_dir / "status.json").read_text())
    assert status["enrolment"] == "enrolled"
    assert status["host_id"] == daemon.assignment.host_id
    assert status["tokens"][0]["token"] == daemon.assignment.slots[0].token
    assert status["peers"] == 1
    assert status["outbox_depth"] == 0
    assert status["last_heartbeat"]["seq"] >= 1
    assert status["running"] is True
    harness.stop(daemon)
    assert json.loads((harness.state_dir / "status.json").read_text())["running"] is False


def test_a_tuple_change_re_enrols_and_no_change_sends_nothing(harness: Harness) -> None:
    daemon = harness.start()
    wait_until(lambda: enrolled(daemon), what="enrolment")
    first = daemon.assignment
    daemon.request_rediscovery("test: nothing changed")
    wait_until(lambda: harness.host.discoveries >= 2, what="re-discovery")
    time.sleep(10 * TICK)
    assert len(harness.leader.results) == 1  # no change, no enrolment traffic

    harness.host.gpus.append(gpu(1))
    daemon.request_rediscovery("test: GPU added")
    wait_until(lambda: enrolled(daemon) and len(daemon.assignment.slots) == 2, what="re-enrolment")
    assert daemon.assignment.host_id == first.host_id
    assert len(harness.leader.accepted()) == 2
    wait_until(
        lambda: len(harness.leader.availability[-1]["slots"]) == 2, what="a two-slot heartbeat"
    )


def test_garbage_and_foreign_assignments_do_not_disturb_enrolment(harness: Harness) -> None:
    harness.leader.answer = False
    daemon = harness.start()
    agent = harness.bus._members["agent-0"]  # the daemon's transport
    for data in (b"", b"{", b"\xff" * 100, json.dumps({"v": 1, "kind": "assignment"}).encode()):
        agent.inject(Message(TOPIC_ASSIGNMENT, data, "hostile"))
    # A genuine assignment for another agent, from the same Leader.
    keys = load_or_create_agent_keys(harness.tmp / "other")
    inventory = FakeHost(gpus=[gpu(3)]).discover(harness.config())
    inventory = dataclasses.replace(
        inventory, host=dataclasses.replace(inventory.host, hostname="other.lab")
    )
    record = build_enrolment(inventory, agent_tuples(inventory), keys)
    sealed = seal_enrolment(record, keys, parse_bundle(harness.leader.bundle))
    result = harness.leader.registrar.ingest(sealed)
    assert result.assignment_envelope is not None
    agent.inject(Message(TOPIC_ASSIGNMENT, result.assignment_envelope, "leader"))
    time.sleep(10 * TICK)
    assert daemon.enrolment_state == "enrolling" and daemon.assignment is None

    harness.leader.answer = True
    wait_until(lambda: enrolled(daemon), 20, what="enrolment after the resend")


def test_restart_with_a_pending_enrolment_completes_without_a_duplicate(harness: Harness) -> None:
    # The Leader accepts the enrolment but its assignment is lost; the agent is stopped.
    harness.leader.answer = False
    daemon = harness.start()
    wait_until(lambda: harness.bus._members.get("agent-0") is not None)
    pending = Outbox.open_in(harness.state_dir).get(ENROL_KEY)
    assert pending is not None
    assert harness.leader.registrar.ingest(pending.data).accepted
    harness.stop(daemon)

    harness.leader.answer = True
    again = harness.start()
    # The outbox resends the identical bytes: the Leader sees a replay and repeats its answer.
    wait_until(lambda: enrolled(again), 20, what="enrolment after restart")
    reasons = [r.reason for r in harness.leader.results]
    assert "replayed" in reasons
    hosts = (
        harness.leader.registrar.registry.hosts()
        if hasattr(harness.leader.registrar.registry, "hosts")
        else None
    )
    if hosts is not None:
        assert len(hosts) == 1
    assert again.assignment.host_id == 0 or again.assignment.host_id >= 0


def test_sequence_keeps_rising_across_restarts(harness: Harness) -> None:
    daemon = harness.start()
    wait_until(lambda: daemon.last_heartbeat is not None, what="heartbeat")
    harness.stop(daemon)
    last = harness.leader.availability[-1]["seq"]
    again = harness.start()
    wait_until(lambda: again.last_heartbeat is not None, what="heartbeat after restart")
    assert again.last_heartbeat["seq"] > last
    assert len(harness.leader.results) == 1  # the stored assignment still matches: no enrolment


def test_a_failing_probe_degrades_and_calls_for_help_past_the_threshold(harness: Harness) -> None:
    harness.host.ollama_failure = ProbeFailure("ollama", "unreachable", "connection refused")
    daemon = harness.start(harness.config(degraded_threshold=0.3))
    wait_until(lambda: harness.leader.availability, what="heartbeat")
    assert harness.leader.availability[0]["slots"][0]["state"] == "degraded"
    assert daemon.reasons and "connection refused" in daemon.reasons[0]
    call = wait_until(lambda: harness.leader.interventions, what="intervention call")[0]
    assert call["reason"] == "degraded" and call["host_id"] == daemon.assignment.host_id
    time.sleep(0.5)
    assert len(harness.leader.interventions) == 1  # once per degraded episode
    wait_until(lambda: daemon.outbox is not None and daemon.outbox.depth() == 0)

    harness.host.ollama_failure = None
    wait_until(lambda: harness.leader.availability[-1]["slots"][0]["state"] == "available")


def test_a_lost_gpu_calls_for_help_and_re_enrols(harness: Harness) -> None:
    harness.host.gpus = [gpu(0), gpu(1)]
    daemon = harness.start()
    wait_until(lambda: enrolled(daemon) and daemon.last_heartbeat is not None)
    del harness.host.gpus[1]  # the usage probe no longer sees it
    call = wait_until(lambda: harness.leader.interventions, what="gpu-lost call")[0]
    assert call["reason"] == "gpu-lost" and call["severity"] == "critical"
    wait_until(lambda: len(daemon.assignment.slots) == 1, what="re-enrolment with one slot")


def test_an_enrolment_held_pending_calls_for_an_operator(harness: Harness) -> None:
    harness.leader.answer = False
    daemon = harness.start(harness.config(degraded_threshold=0.3))
    call = wait_until(lambda: harness.leader.interventions, what="pending call")[0]
    assert call["reason"] == "enrolment-pending" and call["host_id"] is None
    assert daemon.enrolment_state == "pending"


def test_a_stalled_main_loop_stops_the_watchdog_pings(harness: Harness) -> None:
    pings: list[float] = []

    def pinger(progress: Any) -> WatchdogPinger:
        return WatchdogPinger(progress, 0.4, send=lambda: pings.append(time.monotonic()) or True)

    daemon = harness.start(pinger=pinger)
    wait_until(lambda: len(pings) >= 3, what="pings")
    harness.host.block = threading.Event()
    daemon.request_rediscovery("test: a hung probe")
    wait_until(lambda: harness.host.discoveries >= 2, what="the hung discovery")
    time.sleep(0.3)  # max_age 0.2 s: the pinger has noticed
    count = len(pings)
    time.sleep(0.5)
    assert len(pings) == count
    harness.host.block.set()
    wait_until(lambda: len(pings) > count, what="pings again")


def test_reload_applies_heartbeat_and_log_level(harness: Harness) -> None:
    import logging

    fast = harness.config()
    slow = harness.config(log_level="debug", heartbeat=HeartbeatConfig(interval=60, jitter=0.0))
    configs = iter([slow])
    daemon = harness.start(fast, config_loader=lambda: next(configs))
    wait_until(lambda: daemon.last_heartbeat is not None)
    before = logging.getLogger().level
    try:
        daemon.request_reload()
        wait_until(lambda: daemon.config.heartbeat.interval == 60, what="reload")
        assert logging.getLogger().level == logging.DEBUG
        count = len(harness.leader.availability)
        time.sleep(0.5)
        assert len(harness.leader.availability) == count
        assert "RELOADING=1" in harness.notifier.messages
    finally:
        logging.getLogger().setLevel(before)


def test_without_leader_keys_the_daemon_refuses_to_start(tmp_path: Path) -> None:
    daemon = AgentDaemon(
        Config(state_dir=tmp_path),
        transport_factory=lambda cfg: MemoryBus().join("x"),
        discover=FakeHost().discover,
        usage=FakeHost().usage,
        notifier=Recorder(),  # type: ignore[arg-type]
        pinger=lambda progress: None,
    )
    with pytest.raises(ConfigError) as error:
        daemon.run(install_signals=False)
    assert error.value.exit_code == 2


def test_enrolment_reaches_the_enrol_topic_once_per_send(harness: Harness) -> None:
    seen: list[bytes] = []
    spy = harness.bus.join("spy").subscribe(TOPIC_ENROL)
    harness.leader.answer = False
    harness.start()
    message = spy.get(timeout=5)
    assert message is not None
    seen.append(message.data)
    assert json.loads(message.data)["kind"] == "enrolment"


def test_an_ollama_model_change_seen_by_the_poller_re_enrols(harness: Harness) -> None:
    from test_change_watchers import FakeOllama, model

    from cooee_agent.agent.change_watchers import OllamaPoller, fetch_ollama_digests

    ollama = FakeOllama()
    ollama.models = [model("llama3:8b", "aa")]
    original = harness.host.discover
    try:

        def discover(config: Config) -> Any:
            harness.host.models = sorted(name for name, _ in fetch_ollama_digests(ollama.url))
            return original(config)

        def watchers(daemon: AgentDaemon) -> list[OllamaPoller]:
            def changed(change: Any) -> None:
                daemon.request_rediscovery(f"ollama: {', '.join(change.details)}")

            return [OllamaPoller(lambda: fetch_ollama_digests(ollama.url), changed, interval=0.05)]

        harness.host.discover = discover  # type: ignore[method-assign]
        daemon = harness.start(watchers=watchers)
        wait_until(lambda: enrolled(daemon), what="enrolment")
        time.sleep(0.3)  # several polls of an unchanged set: no traffic
        assert len(harness.leader.results) == 1

        ollama.models = [model("llama3:8b", "aa"), model("qwen2:7b", "bb")]
        wait_until(lambda: daemon.identity.agents == 2 and enrolled(daemon), what="re-enrolment")
        assert len(harness.leader.accepted()) == 2
        wait_until(
            lambda: (
                harness.leader.availability[-1]["slots"][0]["models_installed"]
                == ["llama3:8b", "qwen2:7b"]
            ),
            what="a heartbeat with both models",
        )
    finally:
        ollama.stop()


def test_intervene_queues_a_call_the_running_daemon_publishes(harness: Harness) -> None:
    from typer.testing import CliRunner

    from cooee_agent.cli import app

    daemon = harness.start()
    wait_until(lambda: enrolled(daemon) and daemon.last_heartbeat is not None)
    time.sleep(5 * TICK)
    result = CliRunner().invoke(
        app, ["intervene", "--reason", "fan noise in rack 4", "--state-dir", str(harness.state_dir)]
    )
    assert result.exit_code == 0, result.output
    assert "queued" in result.output and "running agent" in result.output
    call = wait_until(lambda: harness.leader.interventions, what="the call")[0]
    assert call["reason"] == "operator" and call["detail"] == "fan noise in rack 4"
    assert call["host_id"] == daemon.assignment.host_id
    wait_until(lambda: daemon.outbox is not None and daemon.outbox.depth() == 0, what="retired")


class MortalTransport:
    """A MemoryTransport that can report itself dead, as a MeshTransport does once its node's
    thread has ended (``alive``); everything else goes to the real transport."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.alive = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def mesh_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and "mesh has stopped" in r.getMessage()
    ]


def test_a_transport_closed_underneath_ends_the_daemon_with_exit_code_1(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = harness.start()
    wait_until(lambda: enrolled(daemon) and daemon.last_heartbeat is not None)
    (_, thread) = harness.daemons[-1]
    harness.bus._members["agent-0"].close()
    thread.join(10)
    assert not thread.is_alive(), "the daemon kept running on a closed mesh"
    assert daemon.exit_code == 1
    assert len(mesh_errors(caplog)) == 1
    assert "heartbeat" not in caplog.text.split("mesh has stopped")[-1]  # no publish errors after


def test_a_dead_mesh_stops_the_watchdog_beat_and_announces_no_leaving(harness: Harness) -> None:
    now = [0.0]
    transport = MortalTransport(harness.bus.join("agent-0"))
    daemon = AgentDaemon(
        harness.config(),
        transport_factory=lambda cfg: transport,  # type: ignore[arg-type,return-value]
        discover=harness.host.discover,
        usage=harness.host.usage,
        notifier=harness.notifier,  # type: ignore[arg-type]
        pinger=lambda progress: None,
        clock=lambda: now[0],
        resend_base=0.2,
    )
    daemon.start()
    try:
        wait_until(lambda: daemon.turn() or daemon.last_heartbeat is not None, what="heartbeat")
        now[0] += 5.0
        daemon.turn()
        assert daemon.progress.age() == 0.0  # a healthy turn beats
        transport.alive = False
        now[0] += 5.0
        daemon.turn()
        daemon.turn()
        assert daemon.progress.age() == 5.0  # no beat: the watchdog pinger withholds its pings
        assert daemon.exit_code == 1
    finally:
        daemon.shutdown()
    time.sleep(0.2)
    assert harness.leader.availability, "the Leader heard the heartbeats"
    assert all(r["kind"] == "availability" for r in harness.leader.availability)


def test_a_reissued_assignment_brings_the_new_read_key_without_enrolling(harness: Harness) -> None:
    from cooee_agent.leader.host_records import ReadKey, reissuer

    daemon = harness.start()
    wait_until(lambda: enrolled(daemon), what="enrolment")
    assert not daemon.assignment.has_read_key  # this Leader runs no DHT
    enrolments = len(harness.leader.results)
    registrar = harness.leader.registrar
    registrar.read_key = ReadKey(registrar.state_dir)  # as after `leader serve --dht`
    agent = harness.bus._members["agent-0"]
    sent = reissuer(registrar, lambda topic, data: agent.inject(Message(topic, data, "leader")))()
    assert sent == 1
    wait_until(lambda: daemon.assignment.has_read_key, what="the re-issued assignment")
    assert daemon.assignment.read_key == registrar.read_key.secret
    stored = json.loads((harness.state_dir / "assignment.json").read_text())
    assert stored["assignment"]["read_key"] == registrar.read_key.secret
    assert daemon.enrolment_state == "enrolled"
    assert len(harness.leader.results) == enrolments  # taken without enrolling again
