"""Availability and leaving records: what a heartbeat says about each slot, and why it is degraded.

The availability schema (docs/PROTOCOL.md section 5) has a state per slot but no reason field:
the reasons travel in the daemon's log, its STATUS= line and status.json, and in the
intervention call raised when a host stays degraded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cooee_agent.agent.usage import Usage
from cooee_agent.discovery.gpu.registry import vendor_of
from cooee_agent.discovery.model import Gpu, Inventory
from cooee_agent.errors import IdentityError
from cooee_agent.identity.canonical import normalise_gpu_id, normalise_model
from cooee_agent.protocol.records import SCHEMA_VERSION, Assignment

log = logging.getLogger(__name__)

BUSY_UTILISATION = 90  # percent: above it a slot is announced busy
MAX_INSTALLED = 256  # schema bounds of models_installed / models_loaded
MAX_LOADED = 64
# Worst first: the host's overall state is the worst of its slots.
STATE_ORDER = ("degraded", "draining", "busy", "available")


@dataclass(frozen=True, slots=True)
class Announcement:
    """One availability record and what the daemon needs to know about it."""

    record: dict[str, Any]
    state: str  # the worst slot state
    reasons: tuple[str, ...]  # why degraded (empty otherwise)
    lost: tuple[str, ...]  # gpu_ids discovery saw that the usage probe no longer finds


def _gpu_id(value: str) -> str:
    try:
        return normalise_gpu_id(value)
    except IdentityError:
        return value.strip().lower()


def _model(name: str) -> str | None:
    try:
        return normalise_model(name)
    except IdentityError:
        return None


def availability(
    assignment: Assignment,
    inventory: Inventory,
    usage: Usage,
    installed: Sequence[str],
    *,
    seq: int,
    interval_s: float,
    issued_at: str,
    draining: bool = False,
) -> Announcement:
    """The availability record for ``assignment``'s slots, from the last discovery and a fresh
    usage sample. A failing probe makes the affected slots ``degraded``; it never raises."""
    seen = {_gpu_id(gpu.gpu_id): gpu for gpu in inventory.gpus}
    now: dict[str, Gpu] = {_gpu_id(gpu.gpu_id): gpu for gpu in usage.gpus}
    vendors = {gpu.vendor for gpu in inventory.gpus}
    # A failing GPU probe explains the missing GPUs of its vendor (the registered probe list says
    # which probe names are GPU probes and for which vendor).
    failed_vendors = {
        vendor: f"{f.probe}: {f.detail}"
        for f in usage.failures
        if (vendor := vendor_of(f.probe)) is not None and vendor in vendors
    }
    crashed = [f"{f.probe}: {f.detail}" for f in usage.failures if f.probe == "gpu"]
    ollama_down = [f"ollama: {f.detail}" for f in usage.failures if f.probe == "ollama"]
    loaded = sorted({m for m in (_model(x.name) for x in usage.loaded) if m})[:MAX_LOADED]
    models = sorted(set(installed))[:MAX_INSTALLED]

    reasons: list[str] = [*crashed, *ollama_down]
    lost: list[str] = []
    slots = []
    for entry in sorted(assignment.slots, key=lambda s: s.slot):
        gpu_id = _gpu_id(entry.gpu_id)
        slot_reasons = [*crashed, *ollama_down]
        before = seen.get(gpu_id)
        current = now.get(gpu_id) if usage.gpus_probed else before
        if gpu_id != "cpu" and current is None:
            vendor = before.vendor if before is not None else ""
            if vendor in failed_vendors:
                slot_reasons.append(failed_vendors[vendor])
            elif not crashed:
                slot_reasons.append(f"gpu-lost: slot {entry.slot} ({entry.gpu_id}) is gone")
                lost.append(gpu_id)
        reasons.extend(r for r in slot_reasons if r not in reasons)
        metrics = current or before
        utilisation = current.utilisation if current is not None else None
        if slot_reasons:
            state = "degraded"
        elif draining:
            state = "draining"
        elif utilisation is not None and utilisation >= BUSY_UTILISATION:
            state = "busy"
        else:
            state = "available"
        slots.append(
            {
                "slot": entry.slot,
                "token": entry.token,
                "state": state,
                "memory_total": metrics.memory_total if metrics is not None else None,
                "memory_free": current.memory_free if current is not None else None,
                "utilisation": utilisation,
                "models_installed": models,
                # Ollama does not say which GPU holds a model: every slot lists what is loaded.
                "models_loaded": loaded,
            }
        )
    record = {
        "schema": SCHEMA_VERSION,
        "kind": "availability",
        "host_id": assignment.host_id,
        "seq": seq,
        "issued_at": issued_at,
        "interval_s": max(1, min(86400, round(interval_s))),
        "slots": slots,
    }
    overall = min((str(slot["state"]) for slot in slots), key=STATE_ORDER.index)
    return Announcement(record, overall, tuple(reasons), tuple(lost))


def leaving(host_id: int, *, seq: int, issued_at: str, reason: str = "shutdown") -> dict[str, Any]:
    """The record a host sends when it stops cleanly."""
    return {
        "schema": SCHEMA_VERSION,
        "kind": "leaving",
        "host_id": host_id,
        "seq": seq,
        "issued_at": issued_at,
        "reason": reason,
    }
