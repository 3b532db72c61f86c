"""The macOS GPU probe, replaying system_profiler, sysctl and ioreg outputs through a runner."""

from __future__ import annotations

import json
import plistlib
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from gpu_support import scan
from hypothesis import given
from hypothesis import strategies as st

from cooee_agent.discovery.gpu import apple
from cooee_agent.discovery.model import Gpu, ProbeFailure
from cooee_agent.identity.canonical import normalise_gpu_id

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "macos"
PROFILER = " ".join(apple.SYSTEM_PROFILER)
IOREG_PCI = " ".join(apple.IOREG_PCI)
IOREG_ACCELERATOR = " ".join(apple.IOREG_ACCELERATOR)


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
    return scan(runner=replay(name), platform="darwin")


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
    gpus, _ = scan(runner=Replay(outputs), platform="darwin")
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


def test_amd_gpu_of_an_intel_mac_is_named_by_its_pci_address_from_iokit() -> None:
    # The Radeon (1002:7340) sits behind its two bridges (1002:1478/1479) and next to its
    # HDMI audio function (1002:ab38): only the device id picks the GPU out of them.
    gpus, failures = discover("intel-amd-macbook-pro.json")
    assert failures == ()
    (gpu,) = gpus
    assert gpu.pci_address == "0000:03:00.0"
    assert gpu.gpu_id == "0000:03:00.0" == normalise_gpu_id(gpu.gpu_id)
    assert "gpu_id_from" not in dict(gpu.details)


def test_pcidebug_bus_is_decimal_and_becomes_hex_in_the_address() -> None:
    gpus, failures = discover("intel-amd-imac-pro-older-keys.json")
    assert failures == ()
    assert [(g.name, g.pci_address, g.gpu_id) for g in gpus] == [
        ("Radeon Pro Vega 64", "0000:0a:00.0", "0000:0a:00.0")
    ]


@pytest.mark.parametrize(
    "failure",
    [
        FileNotFoundError(2, "No such file or directory", "ioreg"),
        subprocess.CalledProcessError(1, ["ioreg"]),
        subprocess.TimeoutExpired(["ioreg"], 8.0),
        "<plist><array><dict><key>pcidebug</key>",
    ],
)
def test_a_failing_ioreg_keeps_the_model_named_amd_gpu_and_says_why(
    failure: Exception | str,
) -> None:
    outputs = dict(replay("intel-amd-macbook-pro.json").outputs)
    del outputs[IOREG_PCI]
    fallback = Replay(outputs)

    def runner(argv: Sequence[str]) -> str:
        if " ".join(argv) == IOREG_PCI:
            if isinstance(failure, str):
                return failure
            raise failure
        return fallback(argv)

    gpus, failures = scan(runner=runner, platform="darwin")
    (gpu,) = gpus
    assert (gpu.vendor, gpu.pci_address, gpu.gpu_id) == ("amd", None, "apple:amd radeon pro 5500m")
    assert gpu.memory_total == 4 * 1024**3
    assert dict(gpu.details)["gpu_id_from"].startswith("model name: ioreg")
    assert [(f.probe, f.reason) for f in failures] == [("apple", "command-failed")]
    assert IOREG_PCI in failures[0].detail


def test_an_amd_gpu_iokit_does_not_list_keeps_its_model_name_and_is_reported() -> None:
    outputs = dict(replay("intel-amd-macbook-pro.json").outputs)
    devices = plistlib.loads(outputs[IOREG_PCI].encode())
    outputs[IOREG_PCI] = plistlib.dumps(
        [d for d in devices if d["device-id"] != (0x7340).to_bytes(4, "little")]
    ).decode()
    gpus, failures = scan(runner=Replay(outputs), platform="darwin")
    (gpu,) = gpus
    assert (gpu.pci_address, gpu.gpu_id) == (None, "apple:amd radeon pro 5500m")
    assert "1002:7340" in dict(gpu.details)["gpu_id_from"]
    assert [(f.probe, f.reason) for f in failures] == [("apple", "bad-response")]


def test_two_identical_cards_get_the_two_pci_addresses_iokit_lists() -> None:
    outputs = dict(replay("intel-amd-imac-pro-older-keys.json").outputs)
    report = json.loads(outputs[PROFILER])
    report["SPDisplaysDataType"].append(dict(report["SPDisplaysDataType"][0]))
    outputs[PROFILER] = json.dumps(report)
    devices = plistlib.loads(outputs[IOREG_PCI].encode())
    twin = dict(next(d for d in devices if d["pcidebug"] == "10:0:0"), pcidebug="5:0:0")
    outputs[IOREG_PCI] = plistlib.dumps([*devices, twin]).decode()
    gpus, failures = scan(runner=Replay(outputs), platform="darwin")
    assert failures == ()
    assert sorted(g.gpu_id for g in gpus) == ["0000:05:00.0", "0000:0a:00.0"]


def test_older_amd_vendor_spelling_and_vram_key_are_understood() -> None:
    gpus, _ = discover("intel-amd-imac-pro-older-keys.json")
    (gpu,) = gpus
    assert (gpu.vendor, gpu.name, gpu.memory_total) == ("amd", "Radeon Pro Vega 64", 16 * 1024**3)


def test_two_identical_cards_without_iokit_get_distinct_model_named_ids() -> None:
    outputs = dict(replay("intel-amd-imac-pro-older-keys.json").outputs)
    report = json.loads(outputs[PROFILER])
    report["SPDisplaysDataType"].append(dict(report["SPDisplaysDataType"][0]))
    outputs[PROFILER] = json.dumps(report)
    del outputs[IOREG_PCI]
    gpus, _ = scan(runner=Replay(outputs), platform="darwin")
    assert [g.gpu_id for g in gpus] == ["apple:radeon pro vega 64", "apple:radeon pro vega 64-2"]


@pytest.mark.parametrize(
    ("fixture", "busy", "in_use", "memory"),
    [("m1-pro.json", 14, 639418368, 16 * 1024**3), ("m3-pro.json", 30, 356089856, 18 * 1024**3)],
)
def test_apple_silicon_load_comes_from_the_accelerator_statistics(
    fixture: str, busy: int, in_use: int, memory: int
) -> None:
    runner = replay(fixture)
    gpus, failures = scan(runner=runner, platform="darwin")
    assert failures == ()
    (gpu,) = gpus
    assert gpu.utilisation == busy
    # Unified memory: what the GPU holds is subtracted from the machine's memory.
    assert gpu.memory_free == memory - in_use
    assert gpu.pci_address is None and gpu.gpu_id.startswith("apple:")
    assert list(apple.IOREG_PCI) not in runner.calls


@pytest.mark.parametrize(
    "answer",
    [None, "", "not a plist", plistlib.dumps([{"PerformanceStatistics": "busy"}]).decode()],
)
def test_unreadable_accelerator_statistics_leave_the_metrics_empty_not_the_gpu(
    answer: str | None,
) -> None:
    outputs = dict(replay("m3-pro.json").outputs)
    if answer is None:
        del outputs[IOREG_ACCELERATOR]
    else:
        outputs[IOREG_ACCELERATOR] = answer
    gpus, failures = scan(runner=Replay(outputs), platform="darwin")
    assert failures == ()
    (gpu,) = gpus
    assert (gpu.gpu_id, gpu.memory_total) == ("apple:m3 pro", 18 * 1024**3)
    assert (gpu.utilisation, gpu.memory_free) == (None, None)


def test_accelerator_figures_out_of_range_are_dropped_and_the_driver_share_is_ignored() -> None:
    text = plistlib.dumps(
        [
            {
                "model": b"Apple M1\0",
                "PerformanceStatistics": {
                    "Device Utilization %": 137,
                    "In use system memory (driver)": 5,
                },
            }
        ]
    ).decode()
    assert apple.parse_ioreg_accelerators(text) == [
        apple.AcceleratorUsage(model="Apple M1", utilisation=None, memory_in_use=None)
    ]


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("3:0:0", "0000:03:00.0"),
        ("0:31:3", "0000:00:1f.3"),
        ("0:28:0(1:1)", "0000:00:1c.0"),
        ("255:31:7", "0000:ff:1f.7"),
        ("256:0:0", None),
        ("0:32:0", None),
        ("0:0:8", None),
        ("3:0", None),
        (None, None),
    ],
)
def test_pcidebug_is_read_as_decimal_bus_device_function(
    text: str | None, address: str | None
) -> None:
    assert apple.parse_pcidebug(text) == address


@given(st.integers(0, 255), st.integers(0, 31), st.integers(0, 7))
def test_every_pcidebug_address_normalises_as_a_gpu_id(
    bus: int, device: int, function: int
) -> None:
    address = apple.parse_pcidebug(f"{bus}:{device}:{function}")
    assert address is not None and normalise_gpu_id(address) == address
    assert address == f"0000:{bus:02x}:{device:02x}.{function}"


# plist strings cannot hold control characters; ioreg writes those as data.
_PLIST_TEXT = st.characters(blacklist_categories=("Cc", "Cs"))


@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["pcidebug", "vendor-id", "device-id", "class-code", "model"]),
            st.integers(-(2**63), 2**63 - 1)
            | st.binary(max_size=6)
            | st.text(_PLIST_TEXT, max_size=12),
            max_size=5,
        ),
        max_size=4,
    )
)
def test_odd_iopcidevice_entries_are_skipped_never_a_crash(
    entries: list[dict[str, object]],
) -> None:
    for device in apple.parse_ioreg_pci(plistlib.dumps(entries).decode()):
        assert normalise_gpu_id(device.address) == device.address


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

    gpus, failures = scan(runner=runner, platform="darwin")
    assert gpus == ()
    assert [(f.probe, f.reason) for f in failures] == [("apple", reason)]


@given(st.text(max_size=200))
def test_any_system_profiler_output_gives_gpus_or_a_reason_never_a_traceback(text: str) -> None:
    gpus, failures = scan(
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
    _gpus, failures = scan(runner=Replay({PROFILER: report}), platform="darwin")
    assert all(f.reason != "probe-crashed" for f in failures)


@pytest.mark.parametrize(
    ("text", "size"),
    [("16 GB", 16 * 1024**3), ("1536 MB", 1536 * 1024**2), ("4,5 GB", int(4.5 * 1024**3))],
)
def test_sizes_in_reports_are_parsed(text: str, size: int) -> None:
    assert apple.parse_size(text) == size


def test_apple_probe_runs_only_on_macos() -> None:
    runner = replay("m1-pro.json")
    gpus, _ = scan(runner=runner, platform="win32", nvml=_NoNvml())
    assert runner.calls == []
    assert not any(g.vendor == "apple" for g in gpus)


class _NoNvml:
    def __getattr__(self, name: str) -> object:
        import pynvml

        return getattr(pynvml, name)

    def nvmlInit(self) -> None:
        import pynvml

        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
