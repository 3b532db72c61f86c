"""Where discovery reads the host: one value, passed down from the top, so tests and containers
point every probe at another tree (a fixture, or the host's / mounted at /host)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class HostPaths:
    """The host's filesystem roots as discovery reads them.

    ``amdgpu_ids`` names libdrm's table outright (None: its usual places under ``usr`` and
    ``opt``); ``ollama_models`` lists the model stores to read when Ollama does not answer (None:
    Ollama's own rule, ``$OLLAMA_MODELS`` or the user's store, then the service stores).
    """

    sysfs: Path = Path("/sys")
    procfs: Path = Path("/proc")
    etc: Path = Path("/etc")
    usr: Path = Path("/usr")
    var: Path = Path("/var")
    opt: Path = Path("/opt")
    amdgpu_ids: Path | None = None
    ollama_models: tuple[Path, ...] | None = None

    @classmethod
    def under(cls, root: Path) -> HostPaths:
        """Every root moved under ``root``, as a copied tree or a mounted host has them."""
        return cls(
            sysfs=root / "sys",
            procfs=root / "proc",
            etc=root / "etc",
            usr=root / "usr",
            var=root / "var",
            opt=root / "opt",
        )

    @property
    def proc_net_route(self) -> Path:
        return self.procfs / "net" / "route"

    @property
    def os_release_files(self) -> tuple[Path, ...]:
        """os-release(5): /etc first, the vendor's copy under /usr/lib when /etc has none."""
        return (self.etc / "os-release", self.usr / "lib" / "os-release")

    @property
    def amdgpu_ids_files(self) -> tuple[Path, ...]:
        """libdrm's amdgpu.ids; ROCm installs its own newer copy under /opt/amdgpu."""
        if self.amdgpu_ids is not None:
            return (self.amdgpu_ids,)
        return (
            self.usr / "share" / "libdrm" / "amdgpu.ids",
            self.opt / "amdgpu" / "share" / "libdrm" / "amdgpu.ids",
        )

    @property
    def ollama_service_models(self) -> tuple[Path, ...]:
        """Where the Linux service (install.sh makes its home /usr/share/ollama) and distro
        packages keep their model store."""
        return (
            self.usr / "share" / "ollama" / ".ollama" / "models",
            self.var / "lib" / "ollama" / ".ollama" / "models",
            self.var / "lib" / "ollama" / "models",
        )
