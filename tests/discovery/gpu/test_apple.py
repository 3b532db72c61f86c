"""The macOS GPU probe, replaying system_profiler and sysctl outputs through an injected runner."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cooee_agent.discovery.gpu import apple, discover_gpus
from cooee_agent.discovery.model import Gpu, ProbeFailure
from cooee_agent.identity.canonical import normalise_gpu_id

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "macos"
PROFILER = " ".join(apple.SYSTEM_PROFILER)


class Replay:
    """A runner that answers recorded commands and fails like a missing binary otherwise."""

    def __init__(self, outputs: dict[str, str]) -> None:
        self.outputs = outputs
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> str:
        self.calls.append(list(argv))
        key = " ".join(argv)
        if key not in self.outputs:
            raise FileNotFoundError(2, "No such file or directory", argv[0])
        return self.outputs[key]


def replay(name: str) -> Replay:
    return Replay(json.loads((FIXTURES / name).read_text(encoding="utf-8"))["outputs"])


def discover(name: str) -> tuple[tuple[Gpu, ...], tuple[ProbeFailure, ...]]:
    return discover_gpus(runner=replay(name), platform="darwin")


@pytest.mark.parametrize(
    ("fixture", "gpu_id", "cores", "memory"),
    [
        ("m1-pro.json", "apple:m1 pro", "16", 17179869184),
        ("m3-pro.json", "apple:m3 pro", "14", 19327352832),
        ("m2-max.json", "apple:m2 max", "30", 34359738368),
        ("m2-ultra.json", "apple:m2 ultra", "76", 206158430208),
    ],
)
def test_apple_silicon_reports_chip_cores_from_the_report_and_unified_memory(
    fixture: str, gpu_id: str, cores: str, memory: int
) -> None:
    gpus, failures = discover(fixture)
    assert failures == ()
    (gpu,) = gpus
    assert gpu.vendor == "apple"
    assert gpu.gpu_id == gpu_id == normalise_gpu_id(gpu.gpu_id)
    assert gpu.pci_address is None and gpu.slot is None
    assert dict(gpu.details)["cores"] == cores
    assert dict(gpu.details)["memory"] == "unified"
    assert gpu.memory_total == memory


def test_core_count_follows_the_report_not_the_chip_name() -> None:
    # A binned M2 Max has 30 cores, the full one 38: only the report can tell.
    outputs = dict(replay("m2-max.json").outputs)
    report = json.loads(outputs[PROFILER])
    report["SPDisplaysDataType"][0]["sppci_cores"] = "38"
    outputs[PROFILER] = json.dumps(report)
    gpus, _ = discover_gpus(runner=Replay(outputs), platform="darwin")
    assert dict(gpus[0].details)["cores"] == "38"


def test_older_metal_key_and_missing_sysctl_still_give_the_gpu_with_report_memory() -> None:
    gpus, failures = discover("m3-max-old-metal-key.json")
    (gpu,) = gpus
    assert gpu.gpu_id == "apple:m3 max"
    assert dict(gpu.details)["cores"] == "40"
    assert gpu.memory_total == 48 * 1024**3
    assert [(f.probe, f.reason) for f in failures] == [("apple", "command-failed")]
    assert "sysctl -n hw.memsize" in failures[0].detail


def test_intel_mac_reports_its_amd_gpu_as_amd_with_vram_and_skips_the_intel_igpu() -> None:
    gpus, failures = discover("intel-amd-macbook-pro.json")
    assert failures == ()
    (gpu,) = gpus
    assert gpu.vendor == "amd"
    assert gpu.name == "AMD Radeon Pro 5500M"
    assert gpu.memory_total == 4 * 1024**3
    assert dict(gpu.details)["device_id"] == "0x7340"
    assert normalise_gpu_id(gpu.gpu_id) == gpu.gpu_id


def test_older_amd_vendor_spelling_and_vram_key_are_understood() -> None:
    gpus, _ = discover("intel-amd-imac-pro-older-keys.json")
    (gpu,) = gpus
    assert (gpu.vendor, gpu.name, gpu.memory_total) == ("amd", "Radeon Pro Vega 64", 16 * 1024**3)


def test_two_identical_cards_get_distinct_ids() -> None:
    outputs = dict(replay("intel-amd-imac-pro-older-keys.json").outputs)
    report = json.loads(outputs[PROFILER])
    report["SPDisplaysDataType"].append(dict(report["SPDisplaysDataType"][0]))
    outputs[PROFILER] = json.dumps(report)
    gpus, _ = discover_gpus(runner=Replay(outputs), platform="darwin")
    assert len({g.gpu_id for g in gpus}) == 2


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (FileNotFoundError(2, "No such file or directory", "system_profiler"), "not-supported"),
        (subprocess.TimeoutExpired(["system_profiler"], 8.0), "timeout"),
        (subprocess.CalledProcessError(1, ["system_profiler"]), "command-failed"),
    ],
)
def test_a_failing_system_profiler_is_a_reason(error: Exception, reason: str) -> None:
    def runner(argv: Sequence[str]) -> str:
        raise error

    gpus, failures = discover_gpus(runner=runner, platform="darwin")
    assert gpus == ()
    assert [(f.probe, f.reason) for f in failures] == [("apple", reason)]


@given(st.text(max_size=200))
def test_any_system_profiler_output_gives_gpus_or_a_reason_never_a_traceback(text: str) -> None:
    gpus, failures = discover_gpus(
        runner=Replay({PROFILER: text, "sysctl -n hw.memsize": "17179869184\n"}), platform="darwin"
    )
    assert gpus or failures
    assert all(f.reason != "probe-crashed" for f in failures)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(
                st.sampled_from(["_name", "sppci_model", "sppci_cores", "spdisplays_vendor"]),
                children,
                max_size=4,
            )
        ),
        max_leaves=10,
    )
)
def test_odd_report_shapes_never_crash_the_probe(displays: object) -> None:
    report = json.dumps({"SPDisplaysDataType": displays, "SPHardwareDataType": [{}]})
    _gpus, failures = discover_gpus(runner=Replay({PROFILER: report}), platform="darwin")
    assert all(f.reason != "probe-crashed" for f in failures)


@pytest.mark.parametrize(
    ("text", "size"),
    [("16 GB", 16 * 1024**3), ("1536 MB", 1536 * 1024**2), ("4,5 GB", int(4.5 * 1024**3))],
)
def test_sizes_in_reports_are_parsed(text: str, size: int) -> None:
    assert apple.parse_size(text) == size


def test_apple_probe_runs_only_on_macos() -> None:
    runner = replay("m1-pro.json")
    gpus, _ = discover_gpus(runner=runner, platform="win32", nvml=_NoNvml())
    assert runner.calls == []
    assert not any(g.vendor == "apple" for g in gpus)


class _NoNvml:
    def __getattr__(self, name: str) -> object:
        import pynvml

        return getattr(pynvml, name)

    def nvmlInit(self) -> None:
        import pynvml

        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
