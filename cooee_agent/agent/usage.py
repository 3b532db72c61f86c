"""Cheap re-probes for each heartbeat: GPU memory and utilisation, and the models Ollama has loaded.

Inventory (discovery) and usage are separate calls, so a failing metric never hides a GPU: a
probe that fails here only degrades the announcement.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cooee_agent.discovery.host_paths import HostPaths
from cooee_agent.discovery.model import Gpu, LoadedModel, ProbeFailure
from cooee_agent.errors import ProbeError

if TYPE_CHECKING:
    from cooee_agent.discovery.gpu.registry import GpuProbe

log = logging.getLogger(__name__)

GpuResult = tuple[tuple[Gpu, ...], tuple[ProbeFailure, ...]]
GpuScan = Callable[[], GpuResult]
LoadedProbe = Callable[[], tuple[LoadedModel, ...]]
UsageProbe = Callable[[], "Usage"]


@dataclass(frozen=True, slots=True)
class Usage:
    """One sample: the GPUs as seen now, the models loaded now, and the probes that failed."""

    gpus: tuple[Gpu, ...]
    loaded: tuple[LoadedModel, ...]
    failures: tuple[ProbeFailure, ...] = ()
    gpus_probed: bool = True  # False where re-probing is too costly (macOS): keep the inventory's


def ollama_loaded(host: str, timeout: float = 1.0) -> LoadedProbe:
    """Ollama's ``GET /api/ps`` at ``host`` (a config URL or OLLAMA_HOST form)."""
    from cooee_agent.discovery import ollama

    base = ollama.parse_ollama_host(host).dial

    def probe() -> tuple[LoadedModel, ...]:
        return ollama.parse_ps(ollama._get_json(base, "/api/ps", timeout))

    return probe


def default_gpu_probe(
    paths: HostPaths = HostPaths(),
    *,
    platform: str | None = None,
    probes: Sequence[GpuProbe] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> GpuScan | None:
    """The GPU probes of this platform that re-read usage, each no more often than its
    ``usage_interval``; None when none does (macOS: system_profiler takes seconds and reports no
    live figures), so heartbeats keep the inventory's figures."""
    from cooee_agent.discovery.gpu import gpu_usage, usage_probes

    failures: list[ProbeFailure] = []
    chosen = usage_probes(probes, platform, failures)
    if not chosen:
        return None
    last: dict[str, tuple[float, GpuResult]] = {}

    def sample() -> GpuResult:
        now = clock()
        gpus: list[Gpu] = []
        found = list(failures)
        for probe in chosen:
            interval = probe.usage_interval or 0.0
            previous = last.get(probe.name)
            if previous is None or now - previous[0] >= interval:
                previous = (now, gpu_usage(paths, platform=platform, probes=[probe]))
                last[probe.name] = previous
            gpus.extend(previous[1][0])
            found.extend(previous[1][1])
        return tuple(gpus), tuple(found)

    return sample


def usage_probe(gpu_probe: GpuScan | None, loaded_probe: LoadedProbe) -> UsageProbe:
    """A Usage sampler; every failure inside becomes a ProbeFailure, never an exception."""

    def sample() -> Usage:
        failures: list[ProbeFailure] = []
        gpus: tuple[Gpu, ...] = ()
        if gpu_probe is not None:
            try:
                gpus, gpu_failures = gpu_probe()
                failures.extend(gpu_failures)
            except Exception as error:  # a crashing probe is a failed probe, not a dead daemon
                log.debug("GPU usage probe crashed", exc_info=True)
                failures.append(ProbeFailure("gpu", "probe-crashed", str(error)))
        loaded: tuple[LoadedModel, ...] = ()
        try:
            loaded = loaded_probe()
        except ProbeError as error:
            failures.append(ProbeFailure("ollama", error.reason, error.detail))
        except Exception as error:
            log.debug("Ollama usage probe crashed", exc_info=True)
            failures.append(ProbeFailure("ollama", "probe-crashed", str(error)))
        return Usage(gpus, loaded, tuple(failures), gpus_probed=gpu_probe is not None)

    return sample
