"""GPUs on macOS from system_profiler and IOKit: Apple Silicon (unified memory), AMD cards."""

from __future__ import annotations

import json
import logging
import plistlib
import re
import subprocess
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from cooee_agent.discovery.commands import Runner, run_command
from cooee_agent.discovery.host_paths import HostPaths
from cooee_agent.discovery.model import Gpu, ProbeFailure
from cooee_agent.errors import ProbeError
from cooee_agent.identity import gpu_ids

PROBE = "apple"
SYSTEM_PROFILER = ("system_profiler", "-json", "SPDisplaysDataType", "SPHardwareDataType")
SYSCTL_MEMSIZE = ("sysctl", "-n", "hw.memsize")
# -d 1: each matching registry entry alone, without its children (bridges are IOPCIDevices too).
IOREG_PCI = ("ioreg", "-a", "-r", "-d", "1", "-c", "IOPCIDevice")
IOREG_ACCELERATOR = ("ioreg", "-a", "-r", "-d", "1", "-c", "IOAccelerator")
AMD_VENDOR_ID = 0x1002
# system_profiler takes one to three seconds on a busy Mac; sysctl answers at once.
PROFILER_TIMEOUT = 8.0

_SIZE = re.compile(r"^\s*([0-9]+(?:[.,][0-9]+)?)\s*([KMGT]?B)\s*$", re.IGNORECASE)
_NOT_ID = re.compile(r"[^a-z0-9 ._-]+")
_HEX = re.compile(r"0x([0-9a-f]{1,4})\b", re.IGNORECASE)
# IOPCIDevice's "pcidebug": decimal bus:device:function, bridges add "(secondary:subordinate)".
_PCIDEBUG = re.compile(r"^\s*([0-9]{1,3}):([0-9]{1,2}):([0-9])(?:\(.*\))?\s*$")
_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PciDevice:
    """One IOPCIDevice as ``ioreg`` shows it."""

    address: str  # 0000:bb:dd.f
    vendor_id: int
    device_id: int
    class_code: int | None = None


@dataclass(frozen=True, slots=True)
class AcceleratorUsage:
    """An IOAccelerator's PerformanceStatistics; None where a figure is missing or absurd."""

    model: str | None
    utilisation: int | None
    memory_in_use: int | None


@dataclass(frozen=True, slots=True)
class AppleProbe:
    """GPUs of a Mac through system_profiler and IOKit; ``runner`` replaces the command runner."""

    name: ClassVar[str] = PROBE
    vendor: ClassVar[str] = "apple"
    # Apple GPUs are apple:<chip>; an Intel Mac's AMD card is named by its PCI address.
    gpu_id_forms: ClassVar[tuple[gpu_ids.GpuIdForm, ...]] = (
        gpu_ids.built_in("apple") + gpu_ids.built_in("amd")[:1]
    )
    # system_profiler takes seconds and reports no live figures: usage is not re-read.
    usage_interval: ClassVar[float | None] = None
    runner: Runner | None = None

    def supported(self, platform: str) -> bool:
        return supported(platform)

    def probe(self, paths: HostPaths) -> tuple[tuple[Gpu, ...], tuple[ProbeFailure, ...]]:
        return probe(self.runner or default_runner)

    def usage(self, paths: HostPaths) -> tuple[tuple[Gpu, ...], tuple[ProbeFailure, ...]]:
        return self.probe(paths)


def supported(platform: str) -> bool:
    return platform == "darwin"


def default_runner(argv: Any) -> str:
    return run_command(argv, timeout=PROFILER_TIMEOUT)


def probe(runner: Runner) -> tuple[tuple[Gpu, ...], tuple[ProbeFailure, ...]]:
    """Apple GPUs as ``apple:<chip>``, discrete AMD GPUs of Intel Macs by PCI address."""
    report = _profiler_report(runner)
    displays = _list(report.get("SPDisplaysDataType"))
    hardware = next((item for item in _list(report.get("SPHardwareDataType")) if item), {})
    failures: list[ProbeFailure] = []
    memsize = _memsize(runner, failures)
    gpus = [gpu for entry in displays if (gpu := _gpu(entry, hardware, memsize)) is not None]
    if not gpus:
        models = ", ".join(_model(entry) or "?" for entry in displays)
        raise ProbeError(
            "no-gpus", f"system_profiler lists no Apple or AMD GPU (found: {models or 'none'})"
        )
    if any(gpu.vendor == "amd" for gpu in gpus):
        gpus = _place_amd(gpus, runner, failures)
    if any(gpu.vendor == "apple" for gpu in gpus):
        usage = apple_usage(runner)
        gpus = [_with_usage(gpu, usage) for gpu in gpus]
    return tuple(_distinct_ids(gpus)), tuple(failures)


def apple_usage(runner: Runner) -> AcceleratorUsage | None:
    """The Apple GPU's load from IOAccelerator; None when ioreg fails or reports nothing."""
    command = " ".join(IOREG_ACCELERATOR)
    try:
        usages = parse_ioreg_accelerators(runner(list(IOREG_ACCELERATOR)))
    except Exception as error:  # a metric that cannot be read must never hide the GPU
        log.debug("%s failed: %s", command, error)
        return None
    apple = [usage for usage in usages if (usage.model or "").lower().startswith("apple")]
    return next(iter(apple or usages), None)


def parse_ioreg_accelerators(text: str) -> list[AcceleratorUsage]:
    """Every IOAccelerator entry with PerformanceStatistics in ``ioreg -a`` output."""
    found: list[AcceleratorUsage] = []
    for entry in _ioreg_entries(text):
        stats = entry.get("PerformanceStatistics")
        if not isinstance(stats, dict):
            continue
        busy = _integer(stats.get("Device Utilization %"))
        # The bare key, not "In use system memory (driver)", is the GPU's own share.
        in_use = _integer(stats.get("In use system memory"))
        model = entry.get("model")
        if isinstance(model, bytes):
            model = model.rstrip(b"\0").decode("utf-8", "replace")
        found.append(
            AcceleratorUsage(
                model=model.strip() if isinstance(model, str) else None,
                utilisation=busy if busy is not None and 0 <= busy <= 100 else None,
                memory_in_use=in_use if in_use is not None and in_use >= 0 else None,
            )
        )
    return found


def parse_ioreg_pci(text: str) -> list[PciDevice]:
    """Every IOPCIDevice with a readable address and ids in ``ioreg -a`` output."""
    found: list[PciDevice] = []
    for entry in _ioreg_entries(text):
        address = parse_pcidebug(entry.get("pcidebug"))
        vendor = _little_endian(entry.get("vendor-id"))
        device = _little_endian(entry.get("device-id"))
        if address is None or vendor is None or device is None:
            continue
        found.append(PciDevice(address, vendor, device, _little_endian(entry.get("class-code"))))
    return found


def parse_pcidebug(value: Any) -> str | None:
    """'3:0:0' or '0:28:0(1:1)' (decimal) → '0000:03:00.0'; None when it is not an address."""
    if not isinstance(value, str):
        return None
    match = _PCIDEBUG.match(value)
    if not match:
        return None
    bus, device, function = (int(part) for part in match.groups())
    if bus > 0xFF or device > 0x1F or function > 7:
        return None
    # pcidebug names no PCI domain; the Macs that carry AMD GPUs have one, 0000.
    return f"0000:{bus:02x}:{device:02x}.{function:x}"


def parse_size(text: Any) -> int | None:
    """'16 GB', '1536 MB', '4,5 GB' (localised decimal comma) → bytes; None when unparseable."""
    if not isinstance(text, str):
        return None
    match = _SIZE.match(text)
    if not match:
        return None
    number = float(match[1].replace(",", "."))
    return int(number * _UNITS[match[2].upper()])


def _profiler_report(runner: Runner) -> dict[str, Any]:
    command = " ".join(SYSTEM_PROFILER)
    try:
        output = runner(list(SYSTEM_PROFILER))
    except FileNotFoundError as error:
        raise ProbeError("not-supported", f"{command}: command not found ({error})") from error
    except subprocess.TimeoutExpired as error:
        raise ProbeError("timeout", f"{command} did not answer in {error.timeout} s") from error
    except (OSError, subprocess.SubprocessError) as error:
        raise ProbeError("command-failed", f"{command} failed: {error}") from error
    try:
        report = json.loads(output)
    except ValueError as error:
        raise ProbeError("bad-response", f"{command} printed no JSON: {error}") from error
    if not isinstance(report, dict):
        raise ProbeError("bad-response", f"{command} printed JSON that is not an object")
    return report


def _memsize(runner: Runner, failures: list[ProbeFailure]) -> int | None:
    try:
        return int(runner(list(SYSCTL_MEMSIZE)).strip())
    except (OSError, subprocess.SubprocessError, ValueError) as error:
        # Only the unified-memory figure suffers; the report's "physical_memory" stands in.
        failures.append(
            ProbeFailure(PROBE, "command-failed", f"{' '.join(SYSCTL_MEMSIZE)} failed: {error}")
        )
        return None


def _gpu(entry: dict[str, Any], hardware: dict[str, Any], memsize: int | None) -> Gpu | None:
    model = _model(entry)
    vendor = str(entry.get("spdisplays_vendor", "")).lower()
    details: list[tuple[str, str]] = []
    cores = str(entry.get("sppci_cores", "")).strip()
    if cores.isdigit():
        details.append(("cores", cores))
    metal = entry.get("spdisplays_mtlgpufamilysupport") or entry.get("spdisplays_metalfamily")
    if metal:
        details.append(("metal", str(metal).removeprefix("spdisplays_")))
    if _is_apple(model, vendor):
        chip = model or str(hardware.get("chip_type", "")).strip()
        if not chip:
            return None
        memory = memsize or parse_size(hardware.get("physical_memory"))
        details.append(("memory", "unified"))
        return Gpu(
            vendor="apple",
            name=chip,
            gpu_id=_apple_id(chip.lower().removeprefix("apple")),
            pci_address=None,
            memory_total=memory,
            details=tuple(details),
        )
    if _is_amd(model, vendor):
        vram = parse_size(entry.get("spdisplays_vram") or entry.get("_spdisplays_vram"))
        device_id = entry.get("spdisplays_device-id") or entry.get("sppci_device-id")
        if device_id:
            details.append(("device_id", str(device_id).lower()))
        # system_profiler gives no PCI address: _place_amd finds it in IOKit by vendor/device id;
        # until then (and if that fails) the model names the card, suffixed if repeated.
        return Gpu(
            vendor="amd",
            name=model or "AMD GPU",
            gpu_id=_apple_id(model or "amd gpu"),
            pci_address=None,
            memory_total=vram,
            details=tuple(details),
        )
    log.debug("skipping display adapter %r (%s): not an Apple or AMD GPU", model, vendor)
    return None


def _list(value: Any) -> list[dict[str, Any]]:
    """The report's list of dictionaries; anything else in it is ignored."""
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


def _model(entry: dict[str, Any]) -> str:
    return str(entry.get("sppci_model") or entry.get("_name") or "").strip()


def _is_apple(model: str, vendor: str) -> bool:
    return vendor.endswith("_apple") or vendor == "apple" or model.lower().startswith("apple m")


def _is_amd(model: str, vendor: str) -> bool:
    # Newer macOS: "sppci_vendor_amd"; older: "AMD (0x1002)" or "ATI (0x1002)".
    return "amd" in vendor or "0x1002" in vendor or "radeon" in model.lower()


def _place_amd(gpus: list[Gpu], runner: Runner, failures: list[ProbeFailure]) -> list[Gpu]:
    """AMD GPUs with their PCI address (also their gpu_id) from IOKit, matched by device id."""
    command = " ".join(IOREG_PCI)
    try:
        devices = parse_ioreg_pci(runner(list(IOREG_PCI)))
    except Exception as error:  # any ioreg trouble leaves the model-named ids, never a crash
        reason = f"{command} failed: {error}"
        failures.append(ProbeFailure(PROBE, "command-failed", reason))
        return [_unplaced(gpu, reason) if gpu.vendor == "amd" else gpu for gpu in gpus]
    free = sorted(
        (device for device in devices if device.vendor_id == AMD_VENDOR_ID),
        key=lambda device: device.address,
    )
    placed: list[Gpu] = []
    missing: list[str] = []
    for gpu in gpus:
        if gpu.vendor != "amd":
            placed.append(gpu)
            continue
        wanted = _hex(dict(gpu.details).get("device_id"))
        # Two identical cards pair up in address order: either way round names both uniquely.
        match = next((device for device in free if device.device_id == wanted), None)
        if match is None:
            why = (
                "system_profiler gives no device id"
                if wanted is None
                else f"{command} lists no device {AMD_VENDOR_ID:04x}:{wanted:04x}"
            )
            missing.append(f"{gpu.name}: {why}")
            placed.append(_unplaced(gpu, why))
            continue
        free.remove(match)
        placed.append(replace(gpu, gpu_id=match.address, pci_address=match.address))
    if missing:
        failures.append(ProbeFailure(PROBE, "bad-response", "; ".join(missing)))
    return placed


def _unplaced(gpu: Gpu, reason: str) -> Gpu:
    return replace(gpu, details=(*gpu.details, ("gpu_id_from", f"model name: {reason}")))


def _with_usage(gpu: Gpu, usage: AcceleratorUsage | None) -> Gpu:
    if gpu.vendor != "apple" or usage is None:
        return gpu
    free = None
    if gpu.memory_total is not None and usage.memory_in_use is not None:
        # Unified memory: only the GPU's own allocations are subtracted, not the CPU's.
        free = max(gpu.memory_total - usage.memory_in_use, 0)
    return replace(gpu, utilisation=usage.utilisation, memory_free=free)


def _distinct_ids(gpus: list[Gpu]) -> list[Gpu]:
    """Two identical cards without a PCI address (a Mac Pro) must not share an id."""
    seen: dict[str, int] = {}
    result: list[Gpu] = []
    for gpu in gpus:
        count = seen.get(gpu.gpu_id, 0) + 1
        seen[gpu.gpu_id] = count
        result.append(gpu if count == 1 else replace(gpu, gpu_id=f"{gpu.gpu_id}-{count}"))
    return result


def _ioreg_entries(text: str) -> list[dict[str, Any]]:
    """The registry entries of an ``ioreg -a`` plist, children included; ValueError if none."""
    try:
        root = plistlib.loads(text.encode("utf-8"))
    except Exception as error:  # plistlib raises several types for a damaged document
        raise ValueError(f"not a property list: {error}") from error
    entries: list[dict[str, Any]] = []
    pending: list[Any] = [root]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(reversed(item))
        elif isinstance(item, dict):
            entries.append(item)
            pending.append(item.get("IORegistryEntryChildren", []))
    return entries


def _little_endian(value: Any) -> int | None:
    """IOKit's PCI ids are 4-byte little-endian data."""
    if isinstance(value, bytes) and 2 <= len(value) <= 4:
        return int.from_bytes(value, "little")
    return None


def _integer(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _hex(value: Any) -> int | None:
    match = _HEX.search(str(value or ""))
    return int(match[1], 16) if match else None


def _apple_id(name: str) -> str:
    """``apple:<name>`` in the characters canonical gpu_ids allow."""
    return "apple:" + (_NOT_ID.sub("-", name.lower()).strip(" -") or "gpu")
