"""GPUs on macOS from system_profiler: Apple Silicon (unified memory), AMD cards in Intel Macs."""

from __future__ import annotations

import json
import logging
import re
import subprocess
from dataclasses import replace
from typing import Any

from cooee_agent.discovery.commands import Runner, run_command
from cooee_agent.discovery.model import Gpu, ProbeFailure
from cooee_agent.errors import ProbeError

PROBE = "apple"
SYSTEM_PROFILER = ("system_profiler", "-json", "SPDisplaysDataType", "SPHardwareDataType")
SYSCTL_MEMSIZE = ("sysctl", "-n", "hw.memsize")
# system_profiler takes one to three seconds on a busy Mac; sysctl answers at once.
PROFILER_TIMEOUT = 8.0

_SIZE = re.compile(r"^\s*([0-9]+(?:[.,][0-9]+)?)\s*([KMGT]?B)\s*$", re.IGNORECASE)
_NOT_ID = re.compile(r"[^a-z0-9 ._-]+")
_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}

log = logging.getLogger(__name__)


def supported(platform: str) -> bool:
    return platform == "darwin"


def default_runner(argv: Any) -> str:
    return run_command(argv, timeout=PROFILER_TIMEOUT)


def probe(runner: Runner) -> tuple[tuple[Gpu, ...], tuple[ProbeFailure, ...]]:
    """Apple GPUs as ``apple:<chip>``, discrete AMD GPUs of Intel Macs as vendor amd."""
    report = _profiler_report(runner)
    displays = _list(report.get("SPDisplaysDataType"))
    hardware = next((item for item in _list(report.get("SPHardwareDataType")) if item), {})
    failures: list[ProbeFailure] = []
    memsize = _memsize(runner, failures)
    gpus: list[Gpu] = []
    seen: dict[str, int] = {}
    for entry in displays:
        gpu = _gpu(entry, hardware, memsize)
        if gpu is None:
            continue
        # Two identical cards (a Mac Pro) must not share an id.
        count = seen.get(gpu.gpu_id, 0) + 1
        seen[gpu.gpu_id] = count
        if count > 1:
            gpu = _with_id(gpu, f"{gpu.gpu_id}-{count}")
        gpus.append(gpu)
    if not gpus:
        models = ", ".join(_model(entry) or "?" for entry in displays)
        raise ProbeError(
            "no-gpus", f"system_profiler lists no Apple or AMD GPU (found: {models or 'none'})"
        )
    return tuple(gpus), tuple(failures)


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
        device_id = entry.get("spdisplays_device-id")
        if device_id:
            details.append(("device_id", str(device_id).lower()))
        # system_profiler gives no PCI address; the model names the card (suffixed if repeated).
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


def _with_id(gpu: Gpu, gpu_id: str) -> Gpu:
    return replace(gpu, gpu_id=gpu_id)


def _apple_id(name: str) -> str:
    """``apple:<name>`` in the characters canonical gpu_ids allow."""
    return "apple:" + (_NOT_ID.sub("-", name.lower()).strip(" -") or "gpu")
