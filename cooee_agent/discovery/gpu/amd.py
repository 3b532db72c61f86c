"""AMD GPUs on Linux: DRM cards found through udev, read through sysfs, named by libdrm."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from cooee_agent.discovery.host_paths import HostPaths
from cooee_agent.discovery.model import Gpu, ProbeFailure
from cooee_agent.errors import IdentityError, ProbeError
from cooee_agent.identity import gpu_ids
from cooee_agent.identity.canonical import normalise_pci_address

PROBE = "amd"
VENDOR = "amd"
AMD_PCI_VENDOR = 0x1002
_CARD = re.compile(r"^card[0-9]+$")  # card0-DP-1 and friends are connectors, not GPUs

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Card:
    """What udev says about one DRM card and its PCI parent."""

    pci_sys_path: str
    slot_name: str | None
    hwdb_model: str | None


@dataclass(frozen=True, slots=True)
class AmdProbe:
    """AMD on Linux through udev and sysfs; ``context`` replaces the pyudev Context (tests)."""

    name: ClassVar[str] = PROBE
    vendor: ClassVar[str] = VENDOR
    gpu_id_forms: ClassVar[tuple[gpu_ids.GpuIdForm, ...]] = gpu_ids.built_in(VENDOR)
    usage_interval: ClassVar[float | None] = 0.0  # a few sysfs reads per card
    context: Any = None

    def supported(self, platform: str) -> bool:
        return supported(platform)

    def probe(self, paths: HostPaths) -> tuple[tuple[Gpu, ...], tuple[ProbeFailure, ...]]:
        return probe(paths, context=self.context)

    def usage(self, paths: HostPaths) -> tuple[tuple[Gpu, ...], tuple[ProbeFailure, ...]]:
        # VRAM use and busy percent are sysfs attributes read with the inventory.
        return self.probe(paths)


def supported(platform: str) -> bool:
    """amdgpu exposes cards through udev and sysfs on Linux only (macOS goes through apple)."""
    return platform.startswith("linux")


def probe(
    paths: HostPaths = HostPaths(), *, context: Any = None
) -> tuple[tuple[Gpu, ...], tuple[ProbeFailure, ...]]:
    """Every AMD GPU, identified by PCI address (card numbering changes across boots)."""
    names = load_amdgpu_ids(paths)
    gpus: list[Gpu] = []
    failures: list[ProbeFailure] = []
    for card in _cards(context):
        try:
            gpu = _gpu(card, paths.sysfs, names)
        except (OSError, ValueError, IdentityError) as error:
            failures.append(
                ProbeFailure(PROBE, "bad-response", f"AMD GPU at {card.pci_sys_path}: {error}")
            )
            continue
        gpus.append(gpu)
    if not gpus and not failures:
        raise ProbeError("no-gpus", "no DRM card with PCI vendor 0x1002 (amdgpu) in udev")
    gpus.sort(key=lambda gpu: gpu.pci_address or "")
    return tuple(gpus), tuple(failures)


def _cards(context: Any) -> list[_Card]:
    """DRM card devices with their PCI parent; the same PCI device is listed once."""
    try:
        import pyudev
    except ImportError as error:
        raise ProbeError("library-not-found", f"pyudev is not installed: {error}") from error
    try:
        udev = context or pyudev.Context()
        devices = list(udev.list_devices(subsystem="drm"))
    except Exception as error:  # libudev missing or sysfs unreadable: the probe cannot look
        raise ProbeError("not-supported", f"udev cannot list DRM devices: {error}") from error
    cards: dict[str, _Card] = {}
    for device in devices:
        if not _CARD.match(device.sys_name or ""):
            continue
        parent = device.find_parent("pci")
        # A pyudev Device is a mapping: an empty one is falsy, so test for None.
        if parent is None or parent.sys_path in cards:
            continue
        vendor = _hex(parent.attributes.get("vendor"))
        if vendor != AMD_PCI_VENDOR:
            continue
        properties = parent.properties
        cards[parent.sys_path] = _Card(
            pci_sys_path=parent.sys_path,
            slot_name=properties.get("PCI_SLOT_NAME") or parent.sys_name,
            hwdb_model=properties.get("ID_MODEL_FROM_DATABASE"),
        )
    return list(cards.values())


def _gpu(card: _Card, sysfs_root: Path, names: dict[tuple[int, int], str]) -> Gpu:
    # udev reports paths under the real /sys; sysfs_root relocates the reads.
    directory = sysfs_root / card.pci_sys_path.removeprefix("/sys/").lstrip("/")
    pci_address = normalise_pci_address(card.slot_name or directory.name)
    device = _hex(_read(directory / "device"))
    revision = _hex(_read(directory / "revision"))
    total = _int(_read(directory / "mem_info_vram_total"))
    used = _int(_read(directory / "mem_info_vram_used"))
    busy = _int(_read(directory / "gpu_busy_percent"))
    unique_id = _read(directory / "unique_id")
    product = _read(directory / "product_name")
    name = (
        (names.get((device, revision)) if device is not None and revision is not None else None)
        or card.hwdb_model
        or product
        or (f"AMD GPU 0x{device:04x}" if device is not None else "AMD GPU")
    )
    details: list[tuple[str, str]] = []
    if device is not None:
        details.append(("device_id", f"0x{device:04x}"))
    if revision is not None:
        details.append(("revision", f"0x{revision:02x}"))
    if unique_id:
        details.append(("unique_id", unique_id.lower()))
    if product:
        details.append(("product_name", product))
    driver = _driver(directory)
    if driver:
        details.append(("driver", driver))
    return Gpu(
        vendor=VENDOR,
        name=name,
        gpu_id=pci_address,
        pci_address=pci_address,
        memory_total=total,
        memory_free=(total - used) if total is not None and used is not None else None,
        utilisation=busy if busy is not None and 0 <= busy <= 100 else None,
        details=tuple(details),
    )


def load_amdgpu_ids(paths: HostPaths = HostPaths()) -> dict[tuple[int, int], str]:
    """(device, revision) → marketing name from libdrm's amdgpu.ids; empty when absent."""
    for candidate in paths.amdgpu_ids_files:
        try:
            text = candidate.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        return parse_amdgpu_ids(text)
    return {}


def parse_amdgpu_ids(text: str) -> dict[tuple[int, int], str]:
    """Rows are ``DEVICE,\\tREVISION,\\tNAME`` in hex; comments and the version line are skipped."""
    names: dict[tuple[int, int], str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [part.strip() for part in line.split(",", 2)]
        if len(parts) != 3 or not parts[2]:
            continue  # the version line ("1.0.0") and anything malformed
        try:
            key = (int(parts[0], 16), int(parts[1], 16))
        except ValueError:
            continue
        names.setdefault(key, parts[2])
    return names


def _driver(directory: Path) -> str | None:
    try:
        return Path(os.readlink(directory / "driver")).name
    except OSError:
        return None


def _read(path: Path) -> str | None:
    """A sysfs attribute, or None when absent, empty or unreadable (some raise EBUSY/EINVAL)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
    return text or None


def _hex(value: Any) -> int | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if not value:
        return None
    try:
        return int(str(value).strip(), 16)
    except ValueError:
        return None


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None
