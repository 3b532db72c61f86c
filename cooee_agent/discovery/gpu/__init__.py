"""GPU discovery: every vendor probe runs on its own, so one failing never hides the others."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cooee_agent.discovery.commands import Runner
from cooee_agent.discovery.model import Gpu, ProbeFailure
from cooee_agent.errors import ProbeError

log = logging.getLogger(__name__)

Result = tuple[tuple[Gpu, ...], tuple[ProbeFailure, ...]]


def discover_gpus(
    *,
    sysfs_root: Path = Path("/sys"),
    runner: Runner | None = None,
    nvml: Any | None = None,
    platform: str | None = None,
    amdgpu_ids: Path | None = None,
) -> Result:
    """All GPUs this host has, with ``slot=None`` (the inventory assigns slots by PCI address),
    and a ProbeFailure for every vendor probe that could not answer.

    ``nvml`` replaces the pynvml module, ``runner`` the command runner (macOS), ``sysfs_root`` the
    sysfs mount and ``amdgpu_ids`` libdrm's name table: tests pass them in, nothing is patched.
    """
    from cooee_agent.discovery.gpu import amd, apple, nvidia

    system = platform or sys.platform
    probes: list[tuple[str, Callable[[], Result]]] = []
    if nvidia.supported(system):
        probes.append((nvidia.PROBE, lambda: nvidia.probe(nvml or nvidia.load_nvml())))
    if amd.supported(system):
        probes.append((amd.PROBE, lambda: amd.probe(sysfs_root=sysfs_root, ids_path=amdgpu_ids)))
    if apple.supported(system):
        probes.append((apple.PROBE, lambda: apple.probe(runner or apple.default_runner)))
    gpus: list[Gpu] = []
    failures: list[ProbeFailure] = []
    for name, run in probes:
        found, failed = run_isolated(name, run)
        gpus.extend(found)
        failures.extend(failed)
    return tuple(gpus), tuple(failures)


def run_isolated(name: str, run: Callable[[], Result]) -> Result:
    """Run one probe; whatever it raises becomes a ProbeFailure, never a traceback."""
    try:
        return run()
    except ProbeError as error:
        return (), (ProbeFailure(name, error.reason, error.detail),)
    except Exception as error:  # a bug or an unforeseen library state must not hide other GPUs
        log.warning("GPU probe %s crashed", name, exc_info=True)
        return (), (ProbeFailure(name, "probe-crashed", f"{type(error).__name__}: {error}"),)
