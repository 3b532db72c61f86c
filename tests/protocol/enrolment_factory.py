"""Builders for enrolment tests: inventories, agent keys, and envelopes crafted byte by byte."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pyrage
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pyrage import x25519

from cooee_agent.agent.enrolment_record import build_enrolment
from cooee_agent.discovery.inventory import SlotTuple
from cooee_agent.discovery.model import Gpu, HostFacts, Inventory, Nic
from cooee_agent.identity.canonical import make_tuple
from cooee_agent.protocol import b64
from cooee_agent.protocol.envelope import Envelope, make_envelope
from cooee_agent.protocol.keys import (
    AgentKeys,
    LeaderBundle,
    LeaderKeys,
    generate_leader_keys,
    key_id,
    load_leader_keys,
    raw_public,
)
from cooee_agent.protocol.records import EnrolmentRecord, now_text
from cooee_agent.protocol.schema import canonical
from cooee_agent.protocol.sealing import address_for


def gpu_uuid(host: int, slot: int) -> str:
    return f"GPU-{host:08x}-0000-4000-8000-{slot:012x}"


def host_mac(host: int) -> str:
    return f"02:00:00:00:{host >> 8:02x}:{host & 0xFF:02x}"


def inventory(
    host: int = 1,
    gpus: int = 1,
    models: tuple[str, ...] = ("llama3:8b",),
    hostname: str | None = None,
) -> tuple[Inventory, list[SlotTuple]]:
    """A host with ``gpus`` NVIDIA GPUs and ``models`` on each, tuples by the identity rules."""
    name = hostname or f"node{host:04d}.lab"
    mac = host_mac(host)
    gpu_values = tuple(
        Gpu(
            vendor="nvidia",
            name="NVIDIA H100 80GB HBM3",
            gpu_id=gpu_uuid(host, slot),
            pci_address=f"0000:{slot + 1:02x}:00.0",
            memory_total=80 * 2**30,
            slot=slot,
        )
        for slot in range(gpus)
    )
    inv = Inventory(
        host=HostFacts(hostname=name, os="linux", os_release="Debian GNU/Linux 12", arch="x86_64"),
        nic=Nic(name="eth0", mac=mac, permanent=True, why="default route"),
        gpus=gpu_values,
        ollama=None,
    )
    slots = [(g.slot or 0, g.gpu_id) for g in gpu_values] or [(0, "cpu")]
    tuples = [
        SlotTuple(slot, gpu_id, make_tuple(model, name, mac, gpu_id))
        for slot, gpu_id in slots
        for model in models
    ]
    return inv, tuples


def agent_keys() -> AgentKeys:
    return AgentKeys(signing=Ed25519PrivateKey.generate(), identity=x25519.Identity.generate())


def record(keys: AgentKeys, host: int = 1, **kwargs: Any) -> EnrolmentRecord:
    gpus = kwargs.pop("gpus", 1)
    models = kwargs.pop("models", ("llama3:8b",))
    hostname = kwargs.pop("hostname", None)
    inv, tuples = inventory(host, gpus, models, hostname)
    return build_enrolment(inv, tuples, keys, **kwargs)


def craft(
    signed_record: bytes,
    sender: Ed25519PrivateKey,
    bundle: LeaderBundle,
    *,
    address: str | None = None,
    sent_at: datetime | None = None,
    kind: str = "enrolment",
) -> bytes:
    """An envelope around any signed-record bytes, sealed to ``bundle``, signed by ``sender``."""
    recipients = [x25519.Recipient.from_str(r) for r in bundle.recipients]
    body = pyrage.encrypt(signed_record, recipients, armored=True).decode("ascii")
    address = address or address_for("enrolment", key_id(raw_public(sender)))
    if len(body) < 60_000:
        return make_envelope(kind, address, body, sender, sent_at=sent_at).to_bytes()
    # Too big for make_envelope, which refuses to produce one: sign it by hand.
    draft = Envelope(1, kind, address, now_text(sent_at), body, b64.encode(raw_public(sender)), "")
    sig = b64.encode(sender.sign(draft.signing_input()))
    return Envelope(**{**draft.unsigned(), "sig": sig}).to_bytes()


def signed(record_value: Any, key: Ed25519PrivateKey) -> bytes:
    from cooee_agent.protocol.envelope import sign_record

    return canonical(sign_record(record_value, key))


@pytest.fixture
def leader_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "leader"
    generate_leader_keys(directory)
    return directory


@pytest.fixture
def leader_keys(leader_dir: Path) -> LeaderKeys:
    return load_leader_keys(leader_dir)


@pytest.fixture
def keys() -> AgentKeys:
    return agent_keys()
