"""Cheap re-probes for each heartbeat: GPU memory and utilisation, and the models Ollama has loaded.

Inventory (discovery) and usage are separate calls, so a failing metric never hides a GPU: a
probe that fails here only degrades the announcement.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass

from cooee_agent.discovery.model import Gpu, LoadedModel, ProbeFailure
from cooee_agent.errors import ProbeError

log = logging.getLogger(__name__)

GpuProbe = Callable[[], tuple[tuple[Gpu, ...], tuple[ProbeFailure, ...]]]
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


def default_gpu_probe() -> GpuProbe | None:
    """NVML and AMD sysfs on Linux; None on macOS, where system_profiler takes seconds and
    reports no live memory or utilisation anyway."""
    if sys.platform == "darwin":
        return None

    def probe() -> tuple[tuple[Gpu, ...], tuple[ProbeFailure, ...]]:
        from cooee_agent.discovery.gpu import discover_gpus

        return discover_gpus()

    return probe


def usage_probe(gpu_probe: GpuProbe | None, loaded_probe: LoadedProbe) -> UsageProbe:
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
