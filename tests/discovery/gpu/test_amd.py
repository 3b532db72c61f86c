"""The AMD probe under umockdev (real libudev, simulated devices) and its amdgpu.ids parser."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from gpu_support import scan
from hypothesis import given
from hypothesis import strategies as st

from cooee_agent.discovery.gpu import amd
from cooee_agent.discovery.host_paths import HostPaths
from cooee_agent.errors import ProbeError

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "fixtures" / "amd"
IDS = FIXTURES / "amdgpu.ids"
SCRIPT = Path(__file__).with_name("amd_under_umockdev.py")

needs_umockdev = pytest.mark.skipif(
    shutil.which("umockdev-run") is None, reason="umockdev-run is not installed"
)


def under_umockdev(description: str, ids: Path | None = IDS) -> dict[str, Any]:
    argv = ["umockdev-run", "-d", str(FIXTURES / description), "--", sys.executable, str(SCRIPT)]
    if ids is not None:
        argv.append(str(ids))
    completed = subprocess.run(
        argv, capture_output=True, text=True, timeout=30, check=True, cwd=ROOT
    )
    return json.loads(completed.stdout)


def only_gpu(result: dict[str, Any]) -> dict[str, Any]:
    assert result["failures"] == []
    (gpu,) = result["gpus"]
    return gpu


@needs_umockdev
def test_rx580_without_unique_id_is_named_from_amdgpu_ids_and_identified_by_pci() -> None:
    gpu = only_gpu(under_umockdev("rx580.umockdev"))
    assert gpu["vendor"] == "amd"
    assert gpu["name"] == "AMD Radeon RX 580 Series"
    assert gpu["gpu_id"] == gpu["pci_address"] == "0000:09:00.0"
    assert gpu["memory_total"] == 4294967296
    assert gpu["memory_free"] == 4294967296 - 536870912
    assert gpu["utilisation"] == 11
    details = dict(gpu["details"])
    assert "unique_id" not in details
    assert details["driver"] == "amdgpu"


@needs_umockdev
def test_rx6900xt_reports_its_unique_id_as_a_detail() -> None:
    gpu = only_gpu(under_umockdev("rx6900xt.umockdev"))
    assert gpu["name"] == "AMD Radeon RX 6900 XT"
    assert gpu["gpu_id"] == "0000:0c:00.0"
    assert gpu["memory_total"] == 17163091968
    assert dict(gpu["details"])["unique_id"] == "946d7e1ef9b172dd"


@needs_umockdev
def test_instinct_mi210_is_named_from_amdgpu_ids() -> None:
    gpu = only_gpu(under_umockdev("mi210.umockdev"))
    assert gpu["name"] == "AMD Instinct MI210"
    assert gpu["pci_address"] == "0000:c1:00.0"
    assert gpu["memory_total"] == 68702699520
    assert dict(gpu["details"])["product_name"] == "Instinct MI210"


@needs_umockdev
def test_a_card_missing_from_amdgpu_ids_falls_back_to_the_udev_hwdb_model() -> None:
    gpu = only_gpu(under_umockdev("mi300x.umockdev"))
    assert gpu["name"] == "Aqua Vanjaram [Instinct MI300X]"
    assert gpu["memory_total"] == 205822885888
    assert gpu["utilisation"] == 100


@needs_umockdev
def test_without_amdgpu_ids_the_hwdb_model_names_the_card() -> None:
    gpu = only_gpu(under_umockdev("rx580.umockdev", ids=FIXTURES / "absent.ids"))
    assert gpu["name"] == "Ellesmere [Radeon RX 470/480/570/570X/580/580X/590]"


@needs_umockdev
def test_mixed_host_lists_amd_cards_once_in_pci_order_whatever_their_card_numbers() -> None:
    # card0 is an Intel iGPU, card1 the RX 6900 XT at 0c, card2 the RX 580 at 09; connectors and
    # render nodes belong to the same PCI devices and must not add GPUs.
    result = under_umockdev("workstation-mixed.umockdev")
    assert result["failures"] == []
    assert [(g["pci_address"], g["name"]) for g in result["gpus"]] == [
        ("0000:09:00.0", "AMD Radeon RX 580 Series"),
        ("0000:0c:00.0", "AMD Radeon RX 6900 XT"),
    ]


@needs_umockdev
@pytest.mark.parametrize("description", ["rx580.umockdev", "workstation-mixed.umockdev"])
def test_results_are_stable_across_runs(description: str) -> None:
    assert under_umockdev(description) == under_umockdev(description)


def test_a_host_without_amd_cards_reports_no_gpus_with_a_reason() -> None:
    class NoDevices:
        def list_devices(self, **_: object) -> list[object]:
            return []

    with pytest.raises(ProbeError) as raised:
        amd.probe(context=NoDevices())
    assert raised.value.reason == "no-gpus"
    assert "0x1002" in raised.value.detail


def test_the_probe_reports_every_failing_vendor_on_a_gpu_less_linux_host() -> None:
    gpus, failures = scan(platform="linux", nvml=_LibraryMissing())
    reasons = {f.probe: f.reason for f in failures}
    # This test may run on a host with an AMD card; the NVIDIA reason is what it pins down.
    assert reasons["nvidia"] == "library-not-found"
    assert all(f.detail for f in failures)
    assert all(g.slot is None for g in gpus)


class _LibraryMissing:
    """An NVML module whose library cannot load, as on every host without the NVIDIA driver."""

    def __getattr__(self, name: str) -> Any:
        import pynvml

        return getattr(pynvml, name)

    def nvmlInit(self) -> None:
        import pynvml

        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)


def test_amdgpu_ids_fixture_parses_rows_and_skips_header_and_version() -> None:
    names = amd.parse_amdgpu_ids(IDS.read_text())
    assert names[(0x73BF, 0xC0)] == "AMD Radeon RX 6900 XT"
    assert names[(0x67DF, 0xE7)] == "AMD Radeon RX 580 Series"
    assert (0x74A1, 0x00) not in names
    assert all(isinstance(name, str) and name for name in names.values())


def test_system_amdgpu_ids_when_present_parses_to_many_names() -> None:
    path = Path("/usr/share/libdrm/amdgpu.ids")
    if not path.exists():
        pytest.skip("libdrm's amdgpu.ids is not installed")
    assert len(amd.load_amdgpu_ids(HostPaths(amdgpu_ids=path))) > 100


@given(
    st.lists(
        st.tuples(
            st.integers(0, 0xFFFF),
            st.integers(0, 0xFF),
            st.text(
                st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1
            ).filter(lambda s: s.strip() and not s.strip().startswith("#")),
        ),
        max_size=20,
    ),
    st.lists(st.text(max_size=30), max_size=5),
)
def test_amdgpu_ids_parser_round_trips_rows_and_never_raises_on_noise(
    rows: list[tuple[int, int, str]], noise: list[str]
) -> None:
    text = "# List of AMDGPU IDs\n1.0.0\n" + "\n".join(
        [f"{d:04X},\t{r:02X},\t{name}" for d, r, name in rows] + noise
    )
    names = amd.parse_amdgpu_ids(text)
    first: dict[tuple[int, int], str] = {}
    for d, r, name in rows:
        first.setdefault((d, r), name.strip())
    for key, name in first.items():
        assert names[key] == name
