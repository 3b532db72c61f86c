"""The NVIDIA probe against NVML scenarios replayed by a faithful fake of the pynvml module."""

from __future__ import annotations

import dataclasses
import json

import pytest
from fake_nvml import FakeNvml, load_scenario
from gpu_support import scan
from hypothesis import given
from hypothesis import strategies as st

from cooee_agent.discovery.gpu import nvidia
from cooee_agent.discovery.model import Gpu, ProbeFailure


def discover(name: str) -> tuple[tuple[Gpu, ...], tuple[ProbeFailure, ...]]:
    return scan(nvml=FakeNvml(load_scenario(name)), platform="win32")


def nvidia_only(name: str) -> tuple[tuple[Gpu, ...], tuple[ProbeFailure, ...]]:
    return nvidia.probe(FakeNvml(load_scenario(name)))


def detail(gpu: Gpu, key: str) -> str | None:
    return dict(gpu.details).get(key)


def test_real_h100_capture_replays_to_what_the_probe_found_on_the_machine() -> None:
    scenario = load_scenario("h100-real.json")
    gpus, failures = nvidia.probe(FakeNvml(scenario))
    found = json.loads(json.dumps([dataclasses.asdict(gpu) for gpu in gpus]))
    assert found == scenario["expected"]["gpus"]
    assert [dataclasses.asdict(f) for f in failures] == scenario["expected"]["failures"]
    assert gpus[0].gpu_id == "GPU-80c053b6-f4d7-5c41-7fed-f11e1d7a3a22"
    assert gpus[0].pci_address == "0000:00:06.0"


def test_eight_h100_are_reported_with_short_pci_addresses_and_versions() -> None:
    gpus, failures = nvidia_only("h100x8.json")
    assert failures == ()
    assert len(gpus) == 8
    assert [g.pci_address for g in gpus][:2] == ["0000:18:00.0", "0000:2a:00.0"]
    assert all(g.name == "NVIDIA H100 80GB HBM3" and g.vendor == "nvidia" for g in gpus)
    assert all(g.memory_total == 85520809984 and g.slot is None for g in gpus)
    assert gpus[1].utilisation == 87
    assert detail(gpus[0], "driver") == "550.54.15"
    assert detail(gpus[0], "cuda") == "12.4"
    assert detail(gpus[0], "compute_capability") == "9.0"
    assert detail(gpus[0], "mig_mode") == "disabled"
    assert len({g.gpu_id for g in gpus}) == 8


def test_mig_devices_replace_their_parent_and_empty_slots_are_skipped() -> None:
    gpus, failures = nvidia_only("a100-mig.json")
    assert failures == ()
    migs = [g for g in gpus if g.gpu_id.startswith("MIG-")]
    assert [g.name for g in migs] == [
        "NVIDIA A100-SXM4-40GB MIG 3g.20gb",
        "NVIDIA A100-SXM4-40GB MIG 2g.10gb",
        "NVIDIA A100-SXM4-40GB MIG 1g.5gb",
    ]
    assert all(g.pci_address == "0000:86:00.0" for g in migs)
    assert all(detail(g, "mig_parent") == "GPU-3b722aa5-db24-5b93-84c8-e4e0efcef078" for g in migs)
    assert [detail(g, "mig_index") for g in migs] == ["0", "1", "3"]
    assert migs[0].memory_total == 20937965568
    # NVML has no utilisation for MIG devices: absent, not an error.
    assert all(g.utilisation is None for g in migs)
    assert "GPU-3b722aa5-db24-5b93-84c8-e4e0efcef078" not in {g.gpu_id for g in gpus}


def test_a_gpu_with_mig_pending_is_reported_whole_with_its_pending_mode() -> None:
    gpus, _ = nvidia_only("a100-mig.json")
    whole = [g for g in gpus if g.gpu_id.startswith("GPU-")]
    assert len(whole) == 1
    assert whole[0].pci_address == "0000:af:00.0"
    assert detail(whole[0], "mig_mode") == "disabled (pending enabled)"
    assert detail(gpus[0], "cuda") == "11.6"


@pytest.mark.parametrize(
    ("scenario", "reason", "words"),
    [
        ("driver-not-loaded.json", "driver-not-loaded", "kernel driver is not loaded"),
        ("library-not-found.json", "library-not-found", "libnvidia-ml.so.1"),
        ("driver-mismatch.json", "driver-mismatch", "versions differ"),
        ("no-gpus.json", "no-gpus", "driver 550.54.15"),
    ],
)
def test_each_nvml_state_yields_its_own_reason(scenario: str, reason: str, words: str) -> None:
    gpus, failures = discover(scenario)
    assert gpus == ()
    assert len(failures) == 1
    assert failures[0].probe == "nvidia"
    assert failures[0].reason == reason
    assert words in failures[0].detail


def test_a_lost_gpu_is_a_failure_naming_its_address_and_the_others_are_reported() -> None:
    gpus, failures = nvidia_only("one-gpu-lost.json")
    assert len(gpus) == 3
    assert "0000:3a:00.0" not in {g.pci_address for g in gpus}
    assert [(f.reason, f.probe) for f in failures] == [("gpu-lost", "nvidia")]
    assert "NVIDIA GPU 2 at 0000:3a:00.0" in failures[0].detail


def test_bytes_from_old_bindings_are_decoded() -> None:
    gpus, failures = nvidia_only("legacy-bytes.json")
    assert failures == ()
    (gpu,) = gpus
    assert gpu.name == "NVIDIA GeForce RTX 3090"
    assert gpu.pci_address == "0000:01:00.0"
    assert isinstance(gpu.gpu_id, str) and gpu.gpu_id.startswith("GPU-")
    assert detail(gpu, "driver") == "470.199.02"
    # MIG is not supported on GeForce: the detail is absent, not an error.
    assert detail(gpu, "mig_mode") is None


def test_an_undecodable_name_keeps_the_gpu() -> None:
    gpus, failures = nvidia_only("wsl-garbage-name.json")
    assert failures == ()
    assert gpus[0].name == "NVIDIA GPU (unreadable name)"
    assert gpus[0].memory_total == 8589934592


def test_nvml_is_shut_down_after_probing() -> None:
    fake = FakeNvml(load_scenario("h100x8.json"))
    nvidia.probe(fake)
    assert fake.shutdowns == 1
    assert not fake.initialised


def test_a_missing_metric_never_hides_a_gpu() -> None:
    scenario = load_scenario("h100x8.json")
    scenario["devices"][0]["memory"] = "NVML_ERROR_UNKNOWN"
    scenario["devices"][0]["utilization"] = "NVML_ERROR_NO_PERMISSION"
    gpus, failures = nvidia.probe(FakeNvml(scenario))
    assert failures == ()
    assert gpus[0].memory_total is None and gpus[0].utilisation is None


def test_a_failing_uuid_read_other_than_lost_is_reported_as_gpu_error() -> None:
    scenario = load_scenario("h100x8.json")
    scenario["devices"][5]["uuid"] = "NVML_ERROR_UNKNOWN"
    gpus, failures = nvidia.probe(FakeNvml(scenario))
    assert len(gpus) == 7
    assert failures[0].reason == "gpu-error"
    assert "0000:ab:00.0" in failures[0].detail


def test_nvidia_probe_is_not_run_on_macos() -> None:
    fake = FakeNvml(load_scenario("h100x8.json"))
    gpus, failures = scan(nvml=fake, platform="darwin", runner=_no_commands)
    assert not any(g.vendor == "nvidia" for g in gpus)
    assert not any(f.probe == "nvidia" for f in failures)


def _no_commands(argv: object) -> str:
    raise FileNotFoundError(f"no such command: {argv}")


@given(st.sampled_from([code for code in range(1, 31) if code not in (3, 6)] + [999]))
def test_any_init_error_becomes_a_reason_and_never_a_traceback(code: int) -> None:
    import pynvml

    name = next(
        key
        for key, value in vars(pynvml).items()
        if key.startswith("NVML_ERROR_") and value == code
    )
    gpus, failures = scan(nvml=FakeNvml({"init_error": name, "devices": []}), platform="win32")
    assert gpus == ()
    (failure,) = failures
    assert failure.reason in {
        "library-not-found",
        "driver-not-loaded",
        "driver-mismatch",
        "no-permission",
        "nvml-error",
    }
    assert failure.detail


@given(
    st.lists(
        st.sampled_from(
            ["NVML_ERROR_GPU_IS_LOST", "NVML_ERROR_UNKNOWN", "NVML_ERROR_NOT_SUPPORTED", "ok"]
        ),
        min_size=8,
        max_size=8,
    )
)
def test_per_gpu_errors_only_remove_the_affected_gpus(errors: list[str]) -> None:
    scenario = load_scenario("h100x8.json")
    for device, error in zip(scenario["devices"], errors, strict=True):
        if error != "ok":
            device["uuid"] = error
    gpus, failures = nvidia.probe(FakeNvml(scenario))
    assert len(gpus) == errors.count("ok")
    assert len(failures) == 8 - errors.count("ok")
    assert {f.reason for f in failures} <= {"gpu-lost", "gpu-error"}
