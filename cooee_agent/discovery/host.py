"""Host facts: hostname, operating system and architecture, read natively."""

from __future__ import annotations

import platform
import socket

from cooee_agent.discovery.host_paths import HostPaths
from cooee_agent.discovery.model import HostFacts


def discover_host(paths: HostPaths = HostPaths()) -> HostFacts:
    """Return this host's facts; ``paths`` relocates /etc and /usr for tests."""
    system = platform.system().lower()
    return HostFacts(
        hostname=hostname(),
        os=system,
        os_release=os_release(system, paths),
        arch=platform.machine(),
        kernel=platform.release(),
    )


def hostname() -> str:
    """The host's name as the kernel knows it (gethostname), not a DNS lookup that could hang."""
    return socket.gethostname()


def os_release(system: str, paths: HostPaths = HostPaths()) -> str:
    """A human name for the OS release: PRETTY_NAME on Linux, "macOS <version>" on Darwin."""
    if system == "darwin":
        version = platform.mac_ver()[0]
        return f"macOS {version}" if version else "macOS"
    for path in paths.os_release_files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        fields = parse_os_release(text)
        name = fields.get("PRETTY_NAME") or fields.get("NAME")
        if name:
            return name
    return f"{platform.system()} {platform.release()}".strip()


def parse_os_release(text: str) -> dict[str, str]:
    """Parse os-release(5): KEY=value lines, values optionally quoted; comments ignored."""
    fields: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        fields[key.strip()] = value
    return fields
