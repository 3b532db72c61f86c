"""Run every probe in isolation, assemble the Inventory, assign GPU slots and form agent tuples."""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from cooee_agent.discovery import host as host_probe
from cooee_agent.discovery import network, ollama
from cooee_agent.discovery.commands import Runner
from cooee_agent.discovery.host_paths import HostPaths
from cooee_agent.discovery.model import (
    Gpu,
    HostFacts,
    Inventory,
    Nic,
    OllamaInfo,
    ProbeFailure,
)
from cooee_agent.discovery.network.linux import PermaddrReader
from cooee_agent.discovery.network.route import DefaultInterfaces
from cooee_agent.errors import DiscoveryError, IdentityError, ProbeError
from cooee_agent.identity.canonical import AgentTuple, make_tuple, normalise_pci_address

log = logging.getLogger(__name__)

MAX_SLOTS = 16  # the token's gpu_slot field has 4 bits
DEFAULT_PROBE_TIMEOUT = 1.5
CPU_GPU_ID = "cpu"
T = TypeVar("T")
# All GPUs and the probes' failures in one call: discover_gpus, or a test's stand-in.
GpuScan = Callable[[], tuple[tuple[Gpu, ...], tuple[ProbeFailure, ...]]]


@dataclass(frozen=True, slots=True)
class SlotTuple:
    """One agent: a model on a GPU slot, with its canonical tuple."""

    slot: int
    gpu_id: str
    tuple: AgentTuple


def discover(
    paths: HostPaths = HostPaths(),
    *,
    ollama_host: str | None = None,
    runner: Runner | None = None,
    timeout: float = DEFAULT_PROBE_TIMEOUT,
    env: Mapping[str, str] | None = None,
    system: str | None = None,
    default_interfaces: DefaultInterfaces | None = None,
    permaddr: PermaddrReader | None = None,
    gpu_scan: GpuScan | None = None,
) -> Inventory:
    """Everything this host offers. Each probe runs in its own thread with its own ``timeout``;
    one that raises or hangs becomes a ProbeFailure and the others are still reported.

    ``paths`` says where the host's sysfs, procfs, /etc and model stores are. The keyword
    arguments replace the machine for tests (macOS command runner, gateway list, permanent-MAC
    reader, all GPU probes at once, Ollama address).
    """
    system = system or platform.system().lower()
    environment = os.environ if env is None else env

    def gpus() -> tuple[tuple[Gpu, ...], tuple[ProbeFailure, ...]]:
        if gpu_scan is not None:
            return gpu_scan()
        try:
            from cooee_agent.discovery.gpu import discover_gpus
        except ImportError as error:
            raise ProbeError("not-available", f"GPU probes cannot be imported: {error}") from error
        return discover_gpus(paths)

    def nic() -> Nic:
        return network.primary_nic(
            system=system,
            paths=paths,
            default_interfaces=default_interfaces,
            permaddr=permaddr,
            runner=runner,
        )

    def models() -> tuple[OllamaInfo, tuple[ProbeFailure, ...]]:
        return ollama.probe_ollama(
            host=ollama_host, timeout=timeout * 0.6, env=environment, paths=paths
        )

    calls: dict[str, Callable[[], Any]] = {
        "host": lambda: host_probe.discover_host(paths),
        "network": nic,
        "gpu": gpus,
        "ollama": models,
    }
    results = run_probes(calls, timeout)
    failures: list[ProbeFailure] = []

    host_value = _take(results["host"], failures)
    if host_value is None:
        # Without gethostname() nothing works; fall back to platform facts so the rest shows.
        host_value = HostFacts(hostname="", os=system, os_release="", arch=platform.machine())
    nic_value = _take(results["network"], failures)
    gpu_value = _take(results["gpu"], failures) or ((), ())
    failures.extend(gpu_value[1])
    ollama_value = _take(results["ollama"], failures)
    ollama_info = None
    if ollama_value is not None:
        ollama_info, ollama_failures = ollama_value
        failures.extend(ollama_failures)
    slotted, slot_failure = assign_slots(gpu_value[0])
    if slot_failure is not None:
        failures.append(slot_failure)
    return Inventory(
        host=host_value,
        nic=nic_value,
        gpus=slotted,
        ollama=ollama_info,
        failures=tuple(failures),
    )


# --- isolation -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Outcome:
    value: Any = None
    failure: ProbeFailure | None = None


def run_probes(calls: Mapping[str, Callable[[], Any]], timeout: float) -> dict[str, _Outcome]:
    """Run each call in a daemon thread (a hung driver call must not keep the process alive)."""
    outcomes: dict[str, _Outcome] = {}
    lock = threading.Lock()

    def runner(name: str, call: Callable[[], Any]) -> None:
        outcome = _call(name, call)
        with lock:
            outcomes[name] = outcome

    threads = {
        name: threading.Thread(target=runner, args=(name, call), name=f"probe-{name}", daemon=True)
        for name, call in calls.items()
    }
    deadline = time.monotonic() + timeout
    for thread in threads.values():
        thread.start()
    for thread in threads.values():
        thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        for name in calls:
            if name not in outcomes:
                detail = f"{name} probe gave no answer within {timeout:g} s"
                outcomes[name] = _Outcome(failure=ProbeFailure(name, "timeout", detail))
        return dict(outcomes)


def _call(name: str, call: Callable[[], Any]) -> _Outcome:
    try:
        return _Outcome(value=call())
    except ProbeError as error:
        return _Outcome(failure=ProbeFailure(name, error.reason, error.detail))
    except Exception as error:  # a bug in one probe must not hide what the others found
        # The reason goes into the inventory; the traceback only into debug logs.
        log.debug("probe %s crashed", name, exc_info=True)
        detail = f"{type(error).__name__}: {error}"
        return _Outcome(failure=ProbeFailure(name, "probe-crashed", detail))


def _take(outcome: _Outcome, failures: list[ProbeFailure]) -> Any:
    if outcome.failure is not None:
        failures.append(outcome.failure)
    return outcome.value


# --- slots and tuples ----------------------------------------------------------------------------


def assign_slots(gpus: Sequence[Gpu]) -> tuple[tuple[Gpu, ...], ProbeFailure | None]:
    """Slots in PCI-address order across vendors; an Apple GPU (no PCI address) is slot 0.

    More than 16 GPUs cannot be named by a token: slots stay unassigned and a failure says so.
    """
    ordered = sorted(gpus, key=_slot_key)
    if len(ordered) > MAX_SLOTS:
        detail = f"{len(ordered)} GPUs found; a host can have at most {MAX_SLOTS} slots"
        return tuple(ordered), ProbeFailure("gpu", "too-many-gpus", detail)
    return tuple(dataclasses.replace(gpu, slot=slot) for slot, gpu in enumerate(ordered)), None


def _slot_key(gpu: Gpu) -> tuple[int, str, str]:
    if gpu.pci_address is None:
        return (0, "", gpu.gpu_id)
    try:
        address = normalise_pci_address(gpu.pci_address)
    except IdentityError:
        address = gpu.pci_address.lower()
    return (1, address, gpu.gpu_id)


def agent_tuples(inventory: Inventory) -> list[SlotTuple]:
    """One canonical tuple per installed model x GPU slot (slot 0 / ``cpu`` without a GPU).

    Raises DiscoveryError when identity cannot be formed: no usable MAC, a hostname that does
    not normalise, or more GPUs than slots. A model whose name does not normalise is skipped.
    """
    if inventory.nic is None:
        reasons = [f.detail for f in inventory.failures if f.probe == "network"]
        why = reasons[0] if reasons else "the network probe found no interface"
        raise DiscoveryError(f"no usable MAC address, so no identity can be formed: {why}")
    if any(gpu.slot is None for gpu in inventory.gpus):
        raise DiscoveryError(
            f"{len(inventory.gpus)} GPUs found but a host has at most {MAX_SLOTS} slots"
        )
    slots = [(gpu.slot or 0, gpu.gpu_id) for gpu in inventory.gpus] or [(0, CPU_GPU_ID)]
    models = (
        [] if inventory.ollama is None else [m for m in inventory.ollama.models if not m.remote]
    )
    result: dict[tuple[int, str], SlotTuple] = {}
    for slot, gpu_id in slots:
        for model in models:
            try:
                agent = make_tuple(model.name, inventory.host.hostname, inventory.nic.mac, gpu_id)
            except IdentityError as error:
                if _field_of(error) == "model":
                    log.warning("skipping model %r: %s", model.name, error)
                    continue
                raise DiscoveryError(f"cannot form an agent identity: {error}") from error
            result.setdefault((slot, agent.model), SlotTuple(slot, gpu_id, agent))
    return [result[key] for key in sorted(result)]


def _field_of(error: IdentityError) -> str:
    return str(error).split(" ", 1)[0]


# --- JSON ----------------------------------------------------------------------------------------

JSON_SCHEMA = "cooee-agent/discover"


def inventory_to_dict(inventory: Inventory) -> dict[str, Any]:
    """The versioned ``discover --json`` document (described in docs/DISCOVERY.md)."""
    try:
        tuples = agent_tuples(inventory)
        identity_error = None
    except DiscoveryError as error:
        tuples, identity_error = [], str(error)
    info = inventory.ollama
    return {
        "schema": JSON_SCHEMA,
        "schema_version": inventory.schema_version,
        "host": dataclasses.asdict(inventory.host),
        "nic": None if inventory.nic is None else dataclasses.asdict(inventory.nic),
        "gpus": [_gpu_dict(gpu) for gpu in inventory.gpus],
        "ollama": None
        if info is None
        else {
            "address": info.address,
            "source": info.source,
            "models_dir": info.models_dir,
            "version": info.version,
            "models": [_plain(dataclasses.asdict(model)) for model in info.models],
            "loaded": [dataclasses.asdict(model) for model in info.loaded],
        },
        "tuples": [
            {
                "slot": entry.slot,
                "gpu_id": entry.tuple.gpu_id,
                "model": entry.tuple.model,
                "hostname": entry.tuple.hostname,
                "mac": entry.tuple.mac,
                "key": entry.tuple.key,
                "short_key": entry.tuple.short_key,
            }
            for entry in tuples
        ],
        "identity_error": identity_error,
        "failures": [dataclasses.asdict(failure) for failure in inventory.failures],
    }


def _gpu_dict(gpu: Gpu) -> dict[str, Any]:
    value = dataclasses.asdict(gpu)
    value["details"] = dict(gpu.details)
    return value


def _plain(value: dict[str, Any]) -> dict[str, Any]:
    return {key: list(item) if isinstance(item, tuple) else item for key, item in value.items()}
