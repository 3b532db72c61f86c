"""Test support for the daemon: a fake host whose GPUs and models tests change, and a stand-in
Leader (the real ingest pipeline) on a transport."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cooee_agent.agent.usage import Usage
from cooee_agent.bus.transport import Transport
from cooee_agent.config import Config, HeartbeatConfig, LeaderConfig
from cooee_agent.discovery.model import (
    Gpu,
    HostFacts,
    Inventory,
    LoadedModel,
    Nic,
    OllamaInfo,
    OllamaModel,
    ProbeFailure,
)
from cooee_agent.leader.registrar import Registrar
from cooee_agent.protocol.keys import generate_leader_keys
from cooee_agent.protocol.kinds import (
    TOPIC_ASSIGNMENT,
    TOPIC_AVAILABILITY,
    TOPIC_ENROL,
    TOPIC_INTERVENTION,
)
from cooee_agent.protocol.sealing import open_plain


def gpu(slot: int, utilisation: int = 10) -> Gpu:
    return Gpu(
        vendor="nvidia",
        name="NVIDIA H100 80GB HBM3",
        gpu_id=f"GPU-00000001-0000-4000-8000-{slot:012x}",
        pci_address=f"0000:{slot + 1:02x}:00.0",
        memory_total=80 * 2**30,
        memory_free=60 * 2**30,
        utilisation=utilisation,
    )


@dataclass
class FakeHost:
    """What discovery and the usage probe see; tests edit it to simulate hotplug."""

    gpus: list[Gpu] = field(default_factory=lambda: [gpu(0)])
    models: list[str] = field(default_factory=lambda: ["llama3:8b"])
    loaded: list[str] = field(default_factory=list)
    ollama_failure: ProbeFailure | None = None
    discoveries: int = 0
    block: threading.Event | None = None  # set: discovery waits on it (a hung probe)

    def discover(self, config: Config) -> Inventory:
        self.discoveries += 1
        if self.block is not None:
            self.block.wait()
        gpus = tuple(
            Gpu(**{**_fields(g), "slot": slot})
            for slot, g in enumerate(sorted(self.gpus, key=lambda g: g.pci_address or ""))
        )
        models = tuple(
            OllamaModel(name=m, digest=hashlib.sha256(m.encode()).hexdigest(), size=1)
            for m in self.models
        )
        return Inventory(
            host=HostFacts(hostname="node1.lab", os="linux", os_release="Debian 12", arch="x86_64"),
            nic=Nic(name="eth0", mac="02:00:00:00:00:01", permanent=True, why="default route"),
            gpus=gpus,
            ollama=OllamaInfo("http://127.0.0.1:11434", "api", "0.5.0", models),
        )

    def usage(self, config: Config) -> Any:
        def sample() -> Usage:
            failures = (self.ollama_failure,) if self.ollama_failure else ()
            loaded = tuple(LoadedModel(m, "0" * 64, 1, 1) for m in self.loaded)
            return Usage(tuple(self.gpus), loaded, failures)

        return sample


def _fields(value: Gpu) -> dict[str, Any]:
    return {name: getattr(value, name) for name in Gpu.__slots__}  # type: ignore[attr-defined]


class StandInLeader:
    """The reference ingest pipeline answering on a transport, the way `leader serve` does:
    assignments for accepted enrolments, the stored one again for a replayed envelope."""

    def __init__(self, state_dir: Path, transport: Transport, *, answer: bool = True) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        generate_leader_keys(state_dir)
        self.registrar = Registrar(state_dir)
        self.bundle = self.registrar.keys.bundle.text
        self.transport = transport
        self.answer = answer
        self.results: list[Any] = []
        self.availability: list[dict[str, Any]] = []
        self.interventions: list[dict[str, Any]] = []
        self._answers: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._subs = [
            transport.subscribe(t) for t in (TOPIC_ENROL, TOPIC_AVAILABILITY, TOPIC_INTERVENTION)
        ]
        self._threads = [
            threading.Thread(target=self._serve, args=(s,), daemon=True) for s in self._subs
        ]
        for thread in self._threads:
            thread.start()

    def _serve(self, subscription: Any) -> None:
        for message in subscription:
            try:
                self._handle(message)
            except Exception as error:  # a test Leader must not die silently
                self.results.append(error)

    def _handle(self, message: Any) -> None:
        if message.topic == TOPIC_ENROL:
            if not self.answer:
                return
            digest = hashlib.sha256(message.data).hexdigest()
            with self._lock:
                result = self.registrar.ingest(message.data)
                self.results.append(result)
                if result.assignment_envelope is not None:
                    self._answers[digest] = result.assignment_envelope
                reply = (
                    self._answers.get(digest) if result.reason in ("accepted", "replayed") else None
                )
            if reply is not None:
                self.transport.publish(TOPIC_ASSIGNMENT, reply)
            return
        record, _ = open_plain(message.data)
        target = self.availability if message.topic == TOPIC_AVAILABILITY else self.interventions
        with self._lock:
            target.append(record)

    def accepted(self) -> list[Any]:
        return [r for r in self.results if getattr(r, "accepted", False)]

    def close(self) -> None:
        for subscription in self._subs:
            subscription.close()
        self.registrar.close()


def agent_config(state_dir: Path, bundle: str, **changes: Any) -> Config:
    heartbeat = changes.pop("heartbeat", HeartbeatConfig(interval=0.2, jitter=0.0))
    return Config(
        state_dir=state_dir,
        leader=LeaderConfig(keys=(bundle,)),
        heartbeat=heartbeat,
        **changes,
    )
