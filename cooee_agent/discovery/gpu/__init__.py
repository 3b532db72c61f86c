"""GPU discovery: every vendor probe runs on its own, so one failing never hides the others."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

from cooee_agent.discovery.host_paths import HostPaths
from cooee_agent.discovery.model import Gpu, ProbeFailure
from cooee_agent.errors import ProbeError

if TYPE_CHECKING:
    from cooee_agent.discovery.gpu.registry import GpuProbe

log = logging.getLogger(__name__)

Result = tuple[tuple[Gpu, ...], tuple[ProbeFailure, ...]]


def discover_gpus(
    paths: HostPaths = HostPaths(),
    *,
    platform: str | None = None,
    probes: Sequence[GpuProbe] | None = None,
) -> Result:
    """All GPUs this host has, with ``slot=None`` (the inventory assigns slots by PCI address),
    and a ProbeFailure for every vendor probe that could not answer.

    ``probes`` replaces the registered list (tests pass probes built on fake NVML modules or
    command runners); ``paths`` says where sysfs and the rest are; nothing is patched.
    """
    failures: list[ProbeFailure] = []
    here = supported_probes(_registered_unless(probes, failures), platform, failures)
    return _gather([(p.name, partial(p.probe, paths)) for p in here], failures)


def gpu_usage(
    paths: HostPaths = HostPaths(),
    *,
    platform: str | None = None,
    probes: Sequence[GpuProbe] | None = None,
) -> Result:
    """Fresh memory and utilisation from every supported probe that re-reads usage."""
    failures: list[ProbeFailure] = []
    chosen = usage_probes(probes, platform, failures)
    return _gather([(p.name, partial(p.usage, paths)) for p in chosen], failures)


def usage_probes(
    probes: Sequence[GpuProbe] | None, platform: str | None, failures: list[ProbeFailure]
) -> list[GpuProbe]:
    """The probes (the registered ones when None) that run here and re-read usage; a probe or
    plugin that cannot answer adds to ``failures``."""
    here = supported_probes(_registered_unless(probes, failures), platform, failures)
    return [p for p in here if p.usage_interval is not None]


def _registered_unless(
    probes: Sequence[GpuProbe] | None, failures: list[ProbeFailure]
) -> Sequence[GpuProbe]:
    from cooee_agent.discovery.gpu.registry import load_plugins, registered

    if probes is not None:
        return probes
    failures.extend(load_plugins())
    return registered()


def supported_probes(
    probes: Sequence[GpuProbe], platform: str | None, failures: list[ProbeFailure]
) -> list[GpuProbe]:
    """The probes that could find something on ``platform`` (default: this one); a probe whose
    check itself fails is reported in ``failures`` and skipped."""
    system = platform or sys.platform
    chosen: list[GpuProbe] = []
    for probe in probes:
        try:
            if probe.supported(system):
                chosen.append(probe)
        except Exception as error:  # a plugin's check must not hide the other vendors
            log.warning("GPU probe %s: supported() crashed", probe.name, exc_info=True)
            failures.append(
                ProbeFailure(probe.name, "probe-crashed", f"{type(error).__name__}: {error}")
            )
    return chosen


def _gather(
    runs: Sequence[tuple[str, Callable[[], Result]]], failures: list[ProbeFailure]
) -> Result:
    gpus: list[Gpu] = []
    for name, run in runs:
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
