"""NVIDIA GPUs and MIG devices through NVML (the nvidia-ml-py bindings, imported as pynvml)."""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

from cooee_agent.discovery.host_paths import HostPaths
from cooee_agent.discovery.model import Gpu, ProbeFailure
from cooee_agent.errors import IdentityError, ProbeError
from cooee_agent.identity import gpu_ids
from cooee_agent.identity.canonical import normalise_pci_address

PROBE = "nvidia"
VENDOR = "nvidia"
LIBRARY = "libnvidia-ml.so.1"

log = logging.getLogger(__name__)

# NVML return codes (nvml.h); the same numbers are pynvml.NVML_ERROR_*.
_NOT_SUPPORTED = 3
_NO_PERMISSION = 4
_NOT_FOUND = 6
_DRIVER_NOT_LOADED = 9
_LIBRARY_NOT_FOUND = 12
_FUNCTION_NOT_FOUND = 13
_GPU_IS_LOST = 15
_LIB_RM_VERSION_MISMATCH = 18
_MIG_ENABLE = 1


@dataclass(frozen=True, slots=True)
class NvidiaProbe:
    """NVIDIA through NVML; ``nvml`` replaces the pynvml module (tests), None loads the real one."""

    name: ClassVar[str] = PROBE
    vendor: ClassVar[str] = VENDOR
    gpu_id_forms: ClassVar[tuple[gpu_ids.GpuIdForm, ...]] = gpu_ids.built_in(VENDOR)
    usage_interval: ClassVar[float | None] = 0.0  # one NVML pass takes milliseconds
    nvml: Any = None

    def supported(self, platform: str) -> bool:
        return supported(platform)

    def probe(self, paths: HostPaths) -> tuple[tuple[Gpu, ...], tuple[ProbeFailure, ...]]:
        return probe(self.nvml if self.nvml is not None else load_nvml())

    def usage(self, paths: HostPaths) -> tuple[tuple[Gpu, ...], tuple[ProbeFailure, ...]]:
        # Inventory and metrics come from the same cheap NVML pass; each metric is optional.
        return self.probe(paths)


def supported(platform: str) -> bool:
    """NVML exists only on Linux and Windows; on macOS it can never load."""
    return platform.startswith("linux") or platform == "win32"


def load_nvml() -> Any:
    """Import the bindings, raising ProbeError when they are not installed."""
    try:
        with warnings.catch_warnings():
            # The deprecated `pynvml` meta-package warns on import; the module is nvidia-ml-py's.
            warnings.simplefilter("ignore", FutureWarning)
            import pynvml
    except ImportError as error:
        raise ProbeError(
            "library-not-found", f"the NVML bindings (nvidia-ml-py) are not installed: {error}"
        ) from error
    return pynvml


def probe(nvml: Any) -> tuple[tuple[Gpu, ...], tuple[ProbeFailure, ...]]:
    """Every NVIDIA GPU (or its MIG devices) that NVML sees; a lost GPU becomes a failure.

    Raises ProbeError when NVML cannot answer at all (no library, no driver, mismatch, no GPUs).
    """
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as error:
        raise _init_error(error) from error
    try:
        return _probe_initialised(nvml)
    finally:
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()


def _init_error(error: Any) -> ProbeError:
    code = getattr(error, "value", None)
    if code == _LIBRARY_NOT_FOUND:
        return ProbeError("library-not-found", f"NVML: {LIBRARY} not found (no NVIDIA driver)")
    if code == _DRIVER_NOT_LOADED:
        return ProbeError(
            "driver-not-loaded",
            "NVML: the library loads but the NVIDIA kernel driver is not loaded",
        )
    if code in (_LIB_RM_VERSION_MISMATCH, _FUNCTION_NOT_FOUND):
        return ProbeError(
            "driver-mismatch",
            f"NVML: the NVML library and the kernel driver versions differ ({error}); "
            "reboot or reload the driver",
        )
    if code == _NO_PERMISSION:
        return ProbeError("no-permission", f"NVML: permission denied opening the driver ({error})")
    return ProbeError("nvml-error", f"NVML: initialisation failed: {error} (code {code})")


def _probe_initialised(nvml: Any) -> tuple[tuple[Gpu, ...], tuple[ProbeFailure, ...]]:
    driver = _optional(nvml, nvml.nvmlSystemGetDriverVersion)
    cuda_raw = _optional(nvml, nvml.nvmlSystemGetCudaDriverVersion)
    system: list[tuple[str, str]] = []
    if driver is not None:
        system.append(("driver", _text(driver)))
    if isinstance(cuda_raw, int) and cuda_raw > 0:
        # NVML_CUDA_DRIVER_VERSION_MAJOR/MINOR from nvml.h.
        system.append(("cuda", f"{cuda_raw // 1000}.{(cuda_raw % 1000) // 10}"))
    try:
        count = nvml.nvmlDeviceGetCount()
    except nvml.NVMLError as error:
        raise ProbeError("nvml-error", f"NVML: counting GPUs failed: {error}") from error
    if count == 0:
        driver_text = f" (driver {_text(driver)})" if driver is not None else ""
        raise ProbeError("no-gpus", f"NVML loaded{driver_text} but reports no GPUs")
    gpus: list[Gpu] = []
    failures: list[ProbeFailure] = []
    for index in range(count):
        try:
            found, lost = _device(nvml, index, tuple(system))
        except nvml.NVMLError as error:
            failures.append(_device_failure(nvml, index, error))
            continue
        except (IdentityError, UnicodeDecodeError) as error:
            failures.append(
                ProbeFailure(PROBE, "bad-response", f"NVIDIA GPU {index}: unreadable id: {error}")
            )
            continue
        gpus.extend(found)
        failures.extend(lost)
    return tuple(gpus), tuple(failures)


def _device(
    nvml: Any, index: int, system: tuple[tuple[str, str], ...]
) -> tuple[list[Gpu], list[ProbeFailure]]:
    """Inventory first (identity fields raise), then usage (each metric optional)."""
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    uuid = _text(nvml.nvmlDeviceGetUUID(handle))
    pci = nvml.nvmlDeviceGetPciInfo(handle)
    pci_address = normalise_pci_address(_text(pci.busId))
    name = _name(nvml, handle)
    details: list[tuple[str, str]] = [("index", str(index)), *system]
    capability = _optional(nvml, nvml.nvmlDeviceGetCudaComputeCapability, handle)
    if capability is not None:
        details.append(("compute_capability", f"{capability[0]}.{capability[1]}"))
    mig = _optional(nvml, nvml.nvmlDeviceGetMigMode, handle)
    mig_enabled = mig is not None and mig[0] == _MIG_ENABLE
    if mig is not None:
        details.append(("mig_mode", _mig_text(mig)))
    total, free = _memory(nvml, handle)
    parent = Gpu(
        vendor=VENDOR,
        name=name,
        gpu_id=uuid,
        pci_address=pci_address,
        memory_total=total,
        memory_free=free,
        utilisation=_utilisation(nvml, handle),
        details=tuple(details),
    )
    if not mig_enabled:
        return [parent], []
    migs, failures = _mig_devices(nvml, handle, parent)
    # With MIG on, the parent's compute is only reachable through its MIG devices.
    return (migs or [parent]), failures


def _mig_devices(nvml: Any, handle: Any, parent: Gpu) -> tuple[list[Gpu], list[ProbeFailure]]:
    devices: list[Gpu] = []
    failures: list[ProbeFailure] = []
    maximum = _optional(nvml, nvml.nvmlDeviceGetMaxMigDeviceCount, handle) or 0
    for mig_index in range(maximum):
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, mig_index)
            uuid = _text(nvml.nvmlDeviceGetUUID(mig))
        except nvml.NVMLError as error:
            if getattr(error, "value", None) != _NOT_FOUND:  # NotFound = an empty MIG slot
                failures.append(
                    ProbeFailure(
                        PROBE,
                        "gpu-error",
                        f"MIG device {mig_index} of {parent.gpu_id} ({parent.pci_address}): "
                        f"{error}",
                    )
                )
            continue
        total, free = _memory(nvml, mig)
        details = (*parent.details, ("mig_parent", parent.gpu_id), ("mig_index", str(mig_index)))
        devices.append(
            Gpu(
                vendor=VENDOR,
                name=_name(nvml, mig),
                gpu_id=uuid,
                pci_address=parent.pci_address,
                memory_total=total,
                memory_free=free,
                utilisation=_utilisation(nvml, mig),
                details=details,
            )
        )
    return devices, failures


def _device_failure(nvml: Any, index: int, error: Any) -> ProbeFailure:
    code = getattr(error, "value", None)
    where = f"NVIDIA GPU {index}"
    try:
        # A lost GPU often still answers for its PCI address, which names it for the operator.
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        where += f" at {normalise_pci_address(_text(nvml.nvmlDeviceGetPciInfo(handle).busId))}"
    except Exception:  # naming the GPU is best effort; the failure is reported regardless
        pass
    if code == _GPU_IS_LOST:
        return ProbeFailure(PROBE, "gpu-lost", f"{where}: {error} (the others are reported)")
    return ProbeFailure(PROBE, "gpu-error", f"{where}: {error} (code {code})")


def _name(nvml: Any, handle: Any) -> str:
    try:
        return _text(nvml.nvmlDeviceGetName(handle)) or "NVIDIA GPU"
    except UnicodeDecodeError:
        # Some WSL drivers return garbage names that the bindings cannot decode.
        return "NVIDIA GPU (unreadable name)"


def _memory(nvml: Any, handle: Any) -> tuple[int | None, int | None]:
    memory = _optional(nvml, nvml.nvmlDeviceGetMemoryInfo, handle)
    if memory is None:
        return None, None
    return int(memory.total), int(memory.free)


def _utilisation(nvml: Any, handle: Any) -> int | None:
    rates = _optional(nvml, nvml.nvmlDeviceGetUtilizationRates, handle)
    return None if rates is None else int(rates.gpu)


def _mig_text(mode: Any) -> str:
    current, pending = (int(mode[0]), int(mode[1]))
    text = "enabled" if current == _MIG_ENABLE else "disabled"
    if pending != current:
        text += f" (pending {'enabled' if pending == _MIG_ENABLE else 'disabled'})"
    return text


def _optional(nvml: Any, function: Any, *args: Any) -> Any:
    """A metric that may be missing: NotSupported and friends give None, never an exception."""
    try:
        return function(*args)
    except nvml.NVMLError as error:
        if getattr(error, "value", None) == _GPU_IS_LOST:
            raise
        if getattr(error, "value", None) != _NOT_SUPPORTED:
            log.debug("NVML %s failed: %s", getattr(function, "__name__", function), error)
        return None


def _text(value: Any) -> str:
    """NVML strings: str from nvidia-ml-py >= 11.525, bytes from older bindings."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return str(value).rstrip("\x00").strip()
