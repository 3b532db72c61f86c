"""Probes run isolated; slots follow PCI order; tuples are model x slot; JSON is versioned."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from discovery_support import NETWORK_FIXTURES, OllamaServer, load_permaddr

from cooee_agent.discovery.host_paths import HostPaths
from cooee_agent.discovery.inventory import (
    agent_tuples,
    assign_slots,
    discover,
    inventory_to_dict,
)
from cooee_agent.discovery.model import (
    Gpu,
    HostFacts,
    Inventory,
    Nic,
    OllamaInfo,
    OllamaModel,
    ProbeFailure,
)
from cooee_agent.errors import DiscoveryError

H100_UUID = "GPU-3b722aa5-db24-5b93-84c8-e4e0efcef078"
HOST = HostFacts(hostname="gpu01.example.", os="linux", os_release="Debian", arch="x86_64")
NIC = Nic(name="eno1", mac="3C:EC:EF:10:20:31", permanent=True, why="default route")


def gpu(vendor: str, gpu_id: str, pci: str | None) -> Gpu:
    return Gpu(vendor=vendor, name=vendor, gpu_id=gpu_id, pci_address=pci)


def models(*names: str, remote: str | None = None) -> OllamaInfo:
    entries = [OllamaModel(name=n, digest="0" * 64, size=1) for n in names]
    if remote:
        entries.append(OllamaModel(name=remote, digest="1" * 64, size=1, remote=True))
    return OllamaInfo("http://127.0.0.1:11434", "api", "0.12.6", tuple(entries))


def test_slots_follow_pci_order_across_vendors_and_nvml_domains() -> None:
    slotted, failure = assign_slots(
        [
            gpu("nvidia", H100_UUID, "00000000:81:00.0"),
            gpu("amd", "0000:03:00.0", "0000:03:00.0"),
            gpu("nvidia", "GPU-00000000-0000-0000-0000-000000000001", "00000000:41:00.0"),
        ]
    )
    assert failure is None
    assert [(g.slot, g.pci_address) for g in slotted] == [
        (0, "0000:03:00.0"),
        (1, "00000000:41:00.0"),
        (2, "00000000:81:00.0"),
    ]


def test_apple_gpu_is_slot_zero() -> None:
    slotted, _ = assign_slots([gpu("apple", "apple:m3 max", None)])
    assert slotted[0].slot == 0


def test_more_than_sixteen_gpus_is_a_clear_failure_not_a_wrap() -> None:
    many = [gpu("amd", f"0000:{bus:02x}:00.0", f"0000:{bus:02x}:00.0") for bus in range(17)]
    slotted, failure = assign_slots(many)
    assert failure is not None and failure.reason == "too-many-gpus" and "17" in failure.detail
    inventory = Inventory(HOST, NIC, slotted, models("llama3:8b"), (failure,))
    with pytest.raises(DiscoveryError, match="at most 16"):
        agent_tuples(inventory)


def test_cpu_only_host_has_slot_zero_with_gpu_id_cpu_and_skips_cloud_models() -> None:
    inventory = Inventory(HOST, NIC, (), models("llama3", "gemma:2b", remote="gpt-oss:120b-cloud"))
    tuples = agent_tuples(inventory)
    assert [(t.slot, t.gpu_id, t.tuple.model) for t in tuples] == [
        (0, "cpu", "gemma:2b"),
        (0, "cpu", "llama3:latest"),
    ]
    assert {t.tuple.hostname for t in tuples} == {"gpu01.example"}
    assert {t.tuple.mac for t in tuples} == {"3cecef102031"}


def test_one_tuple_per_model_and_gpu_slot() -> None:
    gpus, _ = assign_slots(
        [gpu("nvidia", H100_UUID, "0000:81:00.0"), gpu("amd", "0000:03:00.0", "0000:03:00.0")]
    )
    tuples = agent_tuples(Inventory(HOST, NIC, gpus, models("a:1", "b:2")))
    assert [(t.slot, t.tuple.model) for t in tuples] == [
        (0, "a:1"),
        (0, "b:2"),
        (1, "a:1"),
        (1, "b:2"),
    ]
    assert tuples[2].tuple.gpu_id == H100_UUID.lower()
    assert len({t.tuple.key for t in tuples}) == 4


def test_no_usable_mac_is_a_discovery_error_naming_the_reason() -> None:
    failure = ProbeFailure("network", "no-usable-mac", "no physical NIC in /sys/class/net")
    inventory = Inventory(HOST, None, (), models("a:1"), (failure,))
    with pytest.raises(DiscoveryError, match="no physical NIC"):
        agent_tuples(inventory)
    document = inventory_to_dict(inventory)
    assert document["tuples"] == [] and "no usable MAC" in document["identity_error"]


def test_a_model_name_that_does_not_normalise_is_skipped() -> None:
    tuples = agent_tuples(Inventory(HOST, NIC, (), models("good:1", "bad name:x")))
    assert [t.tuple.model for t in tuples] == ["good:1"]


def run_discover(server_url: str, gpu_scan: Callable[[], tuple], timeout: float = 1.5) -> Inventory:
    layout = "bond-docker"
    return discover(
        HostPaths(sysfs=NETWORK_FIXTURES / layout / "sys", ollama_models=()),
        ollama_host=server_url,
        default_interfaces=lambda: ["bond0"],
        permaddr=load_permaddr(layout).get,
        gpu_scan=gpu_scan,
        env={},
        timeout=timeout,
    )


def two_gpus() -> tuple:
    return (
        gpu("nvidia", H100_UUID, "0000:81:00.0"),
        gpu("amd", "0000:03:00.0", "0000:03:00.0"),
    ), ()


def test_discover_assembles_every_probe(ollama_server: Callable[[str], OllamaServer]) -> None:
    inventory = run_discover(ollama_server("v0.12.6").url, two_gpus)
    assert inventory.failures == ()
    assert inventory.nic is not None and inventory.nic.name == "eno1"
    assert [g.slot for g in inventory.gpus] == [0, 1]
    local = [m for m in inventory.ollama.models if not m.remote]
    assert len(agent_tuples(inventory)) == 2 * len(local)
    document = json.loads(json.dumps(inventory_to_dict(inventory)))
    assert document["schema"] == "cooee-agent/discover" and document["schema_version"] == 1
    assert len(document["tuples"]) == 2 * len(local)
    assert all(len(t["short_key"]) == 10 for t in document["tuples"])


def test_a_crashing_probe_becomes_a_reason_and_the_rest_is_reported(
    ollama_server: Callable[[str], OllamaServer],
) -> None:
    def broken() -> tuple:
        raise RuntimeError("simulated driver bug")

    inventory = run_discover(ollama_server("v0.12.6").url, broken)
    assert [(f.probe, f.reason) for f in inventory.failures] == [("gpu", "probe-crashed")]
    assert "simulated driver bug" in inventory.failures[0].detail
    assert inventory.nic is not None and inventory.ollama is not None
    assert agent_tuples(inventory)  # CPU slot 0 still forms agents


def test_a_hanging_probe_times_out_on_its_own(ollama_server: Callable[[str], OllamaServer]) -> None:
    def hangs() -> tuple:
        time.sleep(5)
        return (), ()

    started = time.monotonic()
    inventory = run_discover(ollama_server("v0.12.6").url, hangs, timeout=0.5)
    assert time.monotonic() - started < 1.5
    assert [(f.probe, f.reason) for f in inventory.failures] == [("gpu", "timeout")]
    assert inventory.ollama is not None and inventory.ollama.source == "api"


def test_gpu_probe_failures_are_carried_into_the_inventory(
    ollama_server: Callable[[str], OllamaServer],
) -> None:
    lost = ProbeFailure("nvidia", "gpu-lost", "GPU 00000000:81:00.0 fell off the bus")
    inventory = run_discover(ollama_server("v0.12.6").url, lambda: ((), (lost,)))
    assert lost in inventory.failures
