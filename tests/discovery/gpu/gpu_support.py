"""The built-in GPU probes over a fake NVML module or command runner, as discovery runs them."""

from __future__ import annotations

from typing import Any

from cooee_agent.discovery.commands import Runner
from cooee_agent.discovery.gpu import Result, discover_gpus
from cooee_agent.discovery.gpu.amd import AmdProbe
from cooee_agent.discovery.gpu.apple import AppleProbe
from cooee_agent.discovery.gpu.nvidia import NvidiaProbe


def scan(*, platform: str, nvml: Any = None, runner: Runner | None = None) -> Result:
    """discover_gpus on ``platform`` with every built-in probe; ``nvml`` and ``runner`` stand in
    for pynvml and for the commands the Apple probe runs."""
    probes = (NvidiaProbe(nvml=nvml), AmdProbe(), AppleProbe(runner=runner))
    return discover_gpus(platform=platform, probes=probes)
