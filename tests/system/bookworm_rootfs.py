"""A Debian bookworm root file system with systemd, built once with mmdebstrap and cached.

The mirror is apt's own (the host's /etc/apt/sources.list and sources.list.d/*.sources), so CI
needs no other network than what its apt already uses. The cache directory is named after a
hash of everything that decides the contents, so a change to the package list builds a new one;
the build goes to a temporary name and is renamed when complete, so an interrupted build never
leaves a half root file system behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

# What the package needs at dpkg -i (its Depends), what boots, and iproute2 to give the
# container a default route (the agent's identity is the MAC of the default-route NIC).
INCLUDE = ("systemd", "systemd-sysv", "dbus", "python3.11", "libgmp10", "libsystemd0", "iproute2")
SUITE = "bookworm"
CACHE_ENV = "COOEE_ROOTFS_CACHE"
DEFAULT_CACHE = Path("/var/cache/cooee-agent-tests")
APT_SOURCES = Path("/etc/apt")


def mirror_files(apt: Path = APT_SOURCES) -> list[Path]:
    """apt's configured Debian sources: sources.list and every enabled *.sources/*.list file
    that names a Debian archive (third-party repositories have no keyring in the rootfs)."""
    candidates = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*"))]
    found = []
    for path in candidates:
        if path.suffix not in (".list", ".sources") or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if "debian.org" in text:
            found.append(path)
    return found


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV, str(DEFAULT_CACHE)))


def _key(mirrors: list[Path]) -> str:
    digest = hashlib.sha256()
    digest.update(f"{SUITE} minbase {','.join(INCLUDE)} v1\n".encode())
    for path in mirrors:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_rootfs() -> tuple[Path, float]:
    """The cached root file system, built if absent; also the seconds the build took (0.0 when
    it came from the cache)."""
    mirrors = mirror_files()
    if not mirrors:
        raise RuntimeError("no Debian source in /etc/apt/sources.list*: mmdebstrap has no mirror")
    root = cache_root()
    target = root / f"{SUITE}-{_key(mirrors)}"
    if (target / "usr/lib/systemd/systemd").exists():
        return target, 0.0
    root.mkdir(parents=True, exist_ok=True)
    partial = root / f".{target.name}.{os.getpid()}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    started = time.monotonic()
    try:
        subprocess.run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=minbase",
                f"--include={','.join(INCLUDE)}",
                # mmdebstrap copies the host's hostname in; the container must get its own.
                '--customize-hook=rm -f "$1/etc/hostname"',
                SUITE,
                str(partial),
                *map(str, mirrors),
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=900,
        )
        partial.rename(target)
        # Root file systems of earlier package lists are never used again.
        for stale in root.glob(f"{SUITE}-*"):
            if stale != target:
                shutil.rmtree(stale, ignore_errors=True)
    except subprocess.CalledProcessError as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise RuntimeError(f"mmdebstrap failed:\n{error.stderr[-4000:]}") from error
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target, time.monotonic() - started


if __name__ == "__main__":
    path, seconds = ensure_rootfs()
    print(f"{path} ({seconds:.1f} s)")
