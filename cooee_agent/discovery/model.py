"""The values discovery produces: one frozen Inventory, and a typed ProbeFailure for every probe
that could not answer. These cross module boundaries (identity, enrolment, heartbeat, CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field

INVENTORY_SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class ProbeFailure:
    """Why one probe gave no answer; the rest of the inventory is still reported.

    ``reason`` is a stable machine-readable code (``unreachable``, ``timeout``, ``bad-response``,
    ``library-not-found``, ``driver-not-loaded``, ``driver-mismatch``, ``no-gpus``, ``gpu-lost``,
    ``not-supported``, ``no-default-route``, ...); ``detail`` is one human sentence that names what
    was tried (an address, a path, a library).
    """

    probe: str
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class HostFacts:
    hostname: str
    os: str  # platform.system().lower(): linux, darwin
    os_release: str  # e.g. "Debian GNU/Linux 12 (bookworm)" or "macOS 14.5"
    arch: str  # platform.machine(): x86_64, aarch64, arm64
    kernel: str = ""


@dataclass(frozen=True, slots=True)
class Nic:
    """The interface whose MAC names the host."""

    name: str
    mac: str  # as read; canonical.normalise_mac gives the identity form
    permanent: bool  # True when this is the burned-in address (permaddr / hardware MAC)
    why: str  # how it was chosen: "default route", "first physical NIC by name", ...


@dataclass(frozen=True, slots=True)
class Gpu:
    """One GPU (or MIG device) as a vendor probe saw it. Optional metrics are None when absent."""

    vendor: str  # nvidia | amd | apple
    name: str
    gpu_id: str  # NVIDIA UUID, AMD PCI address or unique_id, apple:<chip>
    pci_address: str | None  # dddd:bb:dd.f; None on Apple
    memory_total: int | None = None  # bytes
    memory_free: int | None = None  # bytes
    utilisation: int | None = None  # percent 0-100
    slot: int | None = None  # assigned by the inventory: all vendors ordered by PCI address
    details: tuple[tuple[str, str], ...] = ()  # vendor extras: driver, cuda, mig_mode, cores, ...


@dataclass(frozen=True, slots=True)
class OllamaModel:
    name: str  # as Ollama shows it, e.g. "llama3:8b"
    digest: str  # sha256 hex of the manifest, no "sha256:" prefix
    size: int  # bytes
    family: str | None = None
    families: tuple[str, ...] = ()
    parameter_size: str | None = None
    quantisation: str | None = None
    modified_at: str | None = None
    remote: bool = False  # a cloud model (remote_host/remote_model): it runs elsewhere
    capabilities: tuple[str, ...] = ()  # e.g. completion, tools, vision; empty when not reported


@dataclass(frozen=True, slots=True)
class LoadedModel:
    name: str
    digest: str
    size: int
    size_vram: int
    expires_at: str | None = None


@dataclass(frozen=True, slots=True)
class OllamaInfo:
    address: str  # the base URL tried, e.g. http://127.0.0.1:11434
    source: str  # "api", "manifests" (server unreachable, read from disk) or "none"
    version: str | None
    models: tuple[OllamaModel, ...]
    loaded: tuple[LoadedModel, ...] = ()
    models_dir: str | None = None  # the manifests directory read when source is "manifests"


@dataclass(frozen=True, slots=True)
class Inventory:
    """Everything discovery found on this host, plus the probes that failed and why."""

    host: HostFacts
    nic: Nic | None
    gpus: tuple[Gpu, ...]
    ollama: OllamaInfo | None
    failures: tuple[ProbeFailure, ...] = field(default=())
    schema_version: int = INVENTORY_SCHEMA_VERSION
