"""The GPU probe contract and the one list of probes: one class per vendor, registered here.

A vendor outside this package (a plugin, a test) calls :func:`register`, or ships an entry point
in the ``cooee_agent.gpu_probes`` group naming a probe object or a class taking no arguments;
entry points are loaded once, when discovery first runs. Registering a probe registers its
gpu_id forms, so identity and the wire protocol accept its GPUs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any, Protocol

from cooee_agent.discovery.gpu.amd import AmdProbe
from cooee_agent.discovery.gpu.apple import AppleProbe
from cooee_agent.discovery.gpu.nvidia import NvidiaProbe
from cooee_agent.discovery.host_paths import HostPaths
from cooee_agent.discovery.model import Gpu, ProbeFailure
from cooee_agent.identity import gpu_ids

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "cooee_agent.gpu_probes"
GpuResult = tuple[tuple[Gpu, ...], tuple[ProbeFailure, ...]]


class GpuProbe(Protocol):
    """One GPU vendor: is it here, what is it, how busy is it.

    ``name`` names the probe's ProbeFailures; ``vendor`` is the ``Gpu.vendor`` (and enrolment
    slot vendor) of what it finds; ``gpu_id_forms`` are the forms of its GPUs' ids.
    ``usage_interval`` says how often the agent re-reads usage: None never (the inventory's
    figures stand, e.g. where a read takes seconds), 0 at every heartbeat, else at most once in
    that many seconds. ``probe`` and ``usage`` raise ProbeError when the vendor cannot answer at
    all, and return a ProbeFailure for each GPU that could not be read.
    """

    @property
    def name(self) -> str: ...

    @property
    def vendor(self) -> str: ...

    @property
    def gpu_id_forms(self) -> tuple[gpu_ids.GpuIdForm, ...]: ...

    @property
    def usage_interval(self) -> float | None: ...

    def supported(self, platform: str) -> bool:
        """Cheap: could this vendor exist on ``platform`` (a ``sys.platform`` value)?"""
        ...

    def probe(self, paths: HostPaths) -> GpuResult:
        """The inventory: every GPU with its identity, each with ``slot=None``."""
        ...

    def usage(self, paths: HostPaths) -> GpuResult:
        """The same GPUs with fresh memory and utilisation figures."""
        ...


BUILT_IN: tuple[GpuProbe, ...] = (NvidiaProbe(), AmdProbe(), AppleProbe())

_lock = threading.Lock()
# Replaced whole under the lock, read without it: discovery always iterates a complete list.
_probes: tuple[GpuProbe, ...] = BUILT_IN
_plugin_failures: tuple[ProbeFailure, ...] | None = None
_plugins_lock = threading.Lock()


def registered() -> tuple[GpuProbe, ...]:
    """The probes discovery runs, in order: the built-in ones, then registered ones."""
    return _probes


def register(probe: GpuProbe) -> None:
    """Add a probe (and its gpu_id forms); a second probe of the same name is refused."""
    global _probes
    with _lock:
        if any(existing.name == probe.name for existing in _probes):
            raise ValueError(f"a GPU probe named {probe.name!r} is already registered")
        gpu_ids.register_form(*probe.gpu_id_forms)
        if probe.vendor not in gpu_ids.vendors():
            gpu_ids.unregister_form(*probe.gpu_id_forms)
            raise ValueError(
                f"GPU probe {probe.name!r}: vendor {probe.vendor!r} has no gpu_id form; "
                "declare one in gpu_id_forms"
            )
        _probes = (*_probes, probe)


def unregister(name: str) -> GpuProbe | None:
    """Remove a registered probe and the forms no other probe declares; built-ins stay."""
    global _probes
    with _lock:
        found = next((p for p in _probes if p.name == name and p not in BUILT_IN), None)
        if found is None:
            return None
        _probes = tuple(p for p in _probes if p is not found)
        still = {form for p in _probes for form in p.gpu_id_forms}
        gpu_ids.unregister_form(*(form for form in found.gpu_id_forms if form not in still))
        return found


def vendor_of(probe_name: str) -> str | None:
    """The vendor a probe name reports for, or None when no GPU probe has that name."""
    return next((p.vendor for p in _probes if p.name == probe_name), None)


def load_plugins() -> tuple[ProbeFailure, ...]:
    """Register the entry-point probes once; what could not be loaded, as ProbeFailures."""
    global _plugin_failures
    with _plugins_lock:
        if _plugin_failures is None:
            from importlib.metadata import entry_points

            _plugin_failures = register_entry_points(entry_points(group=ENTRY_POINT_GROUP))
        return _plugin_failures


class EntryPointLike(Protocol):
    """What register_entry_points needs of an importlib.metadata.EntryPoint."""

    @property
    def name(self) -> str: ...

    @property
    def value(self) -> str: ...

    def load(self) -> Any: ...


def register_entry_points(entries: Iterable[EntryPointLike]) -> tuple[ProbeFailure, ...]:
    """Register the probe each entry point names (an object, or a class taking no arguments);
    one that cannot be loaded or registered becomes a ProbeFailure named after it."""
    failures: list[ProbeFailure] = []
    for entry in entries:
        try:
            loaded = entry.load()
            register(loaded() if isinstance(loaded, type) else loaded)
        except Exception as error:  # one broken plugin must not stop discovery
            log.warning("GPU probe plugin %s failed to load", entry.name, exc_info=True)
            detail = f"entry point {entry.value} could not be loaded: {error}"
            failures.append(ProbeFailure(entry.name, "plugin-failed", detail))
    return tuple(failures)
