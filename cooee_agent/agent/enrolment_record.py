"""The agent's enrolment record: what discovery found (the Inventory and its per-slot tuples) as
the protocol's EnrolmentRecord."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from cooee_agent import __version__
from cooee_agent.discovery.model import Inventory
from cooee_agent.errors import DiscoveryError
from cooee_agent.identity.canonical import (
    AgentTuple,
    normalise_gpu_id,
    normalise_hostname,
    normalise_mac,
)
from cooee_agent.protocol import b64
from cooee_agent.protocol.keys import AgentKeys
from cooee_agent.protocol.records import (
    AgentEntry,
    AgentKey,
    EnrolmentRecord,
    HostEntry,
    SlotEntry,
    new_nonce,
    now_text,
)


class SlotTupleLike(Protocol):
    """discovery.inventory.SlotTuple: one agent tuple on one GPU slot."""

    @property
    def slot(self) -> int: ...

    @property
    def gpu_id(self) -> str: ...

    @property
    def tuple(self) -> AgentTuple: ...


def build_enrolment(
    inventory: Inventory,
    slot_tuples: Sequence[SlotTupleLike],
    keys: AgentKeys,
    *,
    join_token: str | None = None,
    nonce: str | None = None,
    issued_at: datetime | None = None,
) -> EnrolmentRecord:
    """The record for this host: its slots (GPUs, or slot 0 = cpu), and one agent per tuple."""
    if inventory.nic is None:
        raise DiscoveryError("no network interface MAC was found; a host is named by one")
    hostname = normalise_hostname(inventory.host.hostname)
    mac = normalise_mac(inventory.nic.mac)
    slots: dict[int, SlotEntry] = {}
    ordered = sorted(inventory.gpus, key=lambda gpu: (gpu.slot is None, gpu.pci_address or ""))
    for index, gpu in enumerate(ordered):
        slot = gpu.slot if gpu.slot is not None else index
        slots[slot] = SlotEntry(
            slot=slot,
            gpu_id=normalise_gpu_id(gpu.gpu_id),
            vendor=gpu.vendor,
            name=gpu.name,
            memory_total=gpu.memory_total,
        )
    if not slots:
        slots[0] = SlotEntry(slot=0, gpu_id="cpu", vendor="cpu", name="cpu", memory_total=None)
    agents = []
    for entry in slot_tuples:
        if entry.slot not in slots:
            raise DiscoveryError(f"agent tuple names slot {entry.slot}, which has no GPU")
        agents.append(AgentEntry.of(entry.slot, entry.tuple))
    return EnrolmentRecord(
        nonce=nonce or new_nonce(),
        issued_at=now_text(issued_at),
        software=f"cooee-agent/{__version__}",
        agent_key=AgentKey(ed25519=b64.encode(keys.verify_key), age=keys.recipient),
        host=HostEntry(
            hostname=hostname,
            mac=mac,
            os=inventory.host.os or "unknown",
            os_release=inventory.host.os_release,
            arch=inventory.host.arch or "unknown",
            kernel=inventory.host.kernel,
        ),
        slots=tuple(slots[slot] for slot in sorted(slots)),
        agents=tuple(sorted(agents, key=lambda agent: (agent.slot, agent.key))),
        join_token=join_token,
    )
