"""A faithful stand-in for the pynvml module, driven by an NVML scenario (fixtures/nvml/*.json).

Same function names and signatures as nvidia-ml-py; errors are the real pynvml.NVMLError
subclasses built from the real NVML_ERROR_* codes; structures are the real ctypes structures.
Everything the fake does not define (constants, error classes) comes from the real module.

Scenario format (what scripts/capture-nvml prints): ``init_error`` (an NVML_ERROR_* name or null),
``driver_version``, ``cuda_driver_version``, ``devices`` (each: ``handle``, ``name``, ``uuid``,
``pci``, ``memory``, ``utilization``, ``compute_capability``, ``mig_mode``,
``max_mig_device_count``, ``mig_devices`` (null = an empty MIG slot)). Any value that is an
``NVML_ERROR_*`` name makes that call raise it. ``name_bytes_hex`` gives raw name bytes that the
bindings must decode (WSL garbage names). ``legacy_bytes: true`` returns bytes, as nvidia-ml-py
11.495 and pynvml <= 11.4.1 did.
"""

from __future__ import annotations

import ctypes
import json
import warnings
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import pynvml

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "nvml"


class _LegacyPciInfo(ctypes.Structure):
    """nvmlPciInfo_t as bindings before 11.525 declared it: char fields come back as bytes."""

    _fields_ = list(pynvml.nvmlPciInfo_t._fields_)


class _Handle:
    """Opaque like c_nvmlDevice_t: callers may only pass it back."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw


def load_scenario(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


class FakeNvml:
    def __init__(self, scenario: dict[str, Any]) -> None:
        self.scenario = scenario
        self.initialised = False
        self.shutdowns = 0
        self.legacy = bool(scenario.get("legacy_bytes", False))

    def __getattr__(self, name: str) -> Any:
        # Only data may fall through: an NVML function the fake lacks must fail loudly.
        if name.startswith("nvml") and callable(getattr(pynvml, name, None)):
            raise AttributeError(f"FakeNvml does not implement {name}")
        return getattr(pynvml, name)

    # -- helpers ------------------------------------------------------------------------------
    def _check_init(self) -> None:
        if not self.initialised:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)

    @staticmethod
    def _value(value: Any) -> Any:
        if isinstance(value, str) and value.startswith("NVML_ERROR_"):
            raise pynvml.NVMLError(getattr(pynvml, value))
        return value

    def _field(self, handle: _Handle, key: str) -> Any:
        self._check_init()
        if key not in handle.raw:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return self._value(handle.raw[key])

    def _string(self, value: str) -> Any:
        return value.encode() if self.legacy else value

    # -- library ------------------------------------------------------------------------------
    def nvmlInit(self) -> None:
        error = self.scenario.get("init_error")
        if error:
            raise pynvml.NVMLError(getattr(pynvml, error))
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self._check_init()
        self.initialised = False
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> Any:
        self._check_init()
        return self._string(self._value(self.scenario["driver_version"]))

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._check_init()
        return int(self._value(self.scenario["cuda_driver_version"]))

    def nvmlDeviceGetCount(self) -> int:
        self._check_init()
        return len(self.scenario["devices"])

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        self._check_init()
        devices = self.scenario["devices"]
        if not 0 <= index < len(devices):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        self._value(devices[index].get("handle"))
        return _Handle(devices[index])

    # -- device -------------------------------------------------------------------------------
    def nvmlDeviceGetName(self, handle: _Handle) -> Any:
        self._check_init()
        if "name_bytes_hex" in handle.raw:
            raw = bytes.fromhex(handle.raw["name_bytes_hex"])
            # convertStrBytes decodes strictly: undecodable names raise UnicodeDecodeError.
            return raw if self.legacy else raw.decode()
        return self._string(self._field(handle, "name"))

    def nvmlDeviceGetUUID(self, handle: _Handle) -> Any:
        return self._string(self._field(handle, "uuid"))

    def nvmlDeviceGetPciInfo(self, handle: _Handle) -> Any:
        fields = self._field(handle, "pci")
        info = _LegacyPciInfo() if self.legacy else pynvml.nvmlPciInfo_t()
        for key, value in fields.items():
            setattr(info, key, value.encode() if isinstance(value, str) else value)
        return info

    def nvmlDeviceGetMemoryInfo(self, handle: _Handle, version: Any = None) -> Any:
        fields = self._field(handle, "memory")
        if version:
            memory = pynvml.c_nvmlMemory_v2_t()
            memory.version = version
            memory.reserved = fields.get("reserved", 0)
        else:
            memory = pynvml.c_nvmlMemory_t()
        memory.total, memory.free, memory.used = fields["total"], fields["free"], fields["used"]
        return memory

    def nvmlDeviceGetUtilizationRates(self, handle: _Handle) -> Any:
        fields = self._field(handle, "utilization")
        rates = pynvml.c_nvmlUtilization_t()
        rates.gpu, rates.memory = fields["gpu"], fields["memory"]
        return rates

    def nvmlDeviceGetCudaComputeCapability(self, handle: _Handle) -> tuple[int, int]:
        major, minor = self._field(handle, "compute_capability")
        return (major, minor)

    def nvmlDeviceGetMigMode(self, device: _Handle) -> list[int]:
        return list(self._field(device, "mig_mode"))

    def nvmlDeviceGetMaxMigDeviceCount(self, device: _Handle) -> int:
        return int(self._field(device, "max_mig_device_count"))

    def nvmlDeviceGetMigDeviceHandleByIndex(self, device: _Handle, index: int) -> _Handle:
        migs = self._field(device, "mig_devices")
        if index >= int(self._field(device, "max_mig_device_count")):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if index >= len(migs) or migs[index] is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return _Handle(self._value(migs[index]))
