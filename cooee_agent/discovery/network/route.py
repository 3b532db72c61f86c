"""Which interfaces carry the default route: netifaces' gateways, or the kernel's route table."""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cooee_agent.discovery.host_paths import HostPaths

DefaultInterfaces = Callable[[], Sequence[str]]


def netifaces_default_interfaces(paths: HostPaths = HostPaths()) -> list[str]:
    """Default-route interfaces from netifaces: IPv4 first, then IPv6, each listed once."""
    try:
        import netifaces
    except ImportError:  # the package is optional on odd platforms: fall back to /proc
        return proc_route_default_interfaces(_read_route(paths))
    return gateways_default_interfaces(netifaces.gateways())


def gateways_default_interfaces(gateways: Mapping[Any, Any]) -> list[str]:
    """Interfaces from a ``netifaces.gateways()`` mapping, IPv4 before IPv6, defaults first."""
    names: list[str] = []
    families = (socket.AF_INET, socket.AF_INET6)
    default = gateways.get("default")
    if isinstance(default, Mapping):
        for family in families:
            entry = default.get(family)
            if isinstance(entry, Sequence) and len(entry) >= 2:
                names.append(str(entry[1]))
    for family in families:
        entries = gateways.get(family)
        if isinstance(entries, Sequence):
            for entry in entries:
                if isinstance(entry, Sequence) and len(entry) >= 3 and entry[2]:
                    names.append(str(entry[1]))
    return list(dict.fromkeys(names))


def proc_route_default_interfaces(text: str) -> list[str]:
    """Interfaces with a default route in /proc/net/route, lowest metric first."""
    rows: list[tuple[int, int, str]] = []
    for position, line in enumerate(text.splitlines()[1:]):
        fields = line.split()
        if len(fields) < 8 or fields[1] != "00000000" or fields[7] != "00000000":
            continue
        try:
            flags, metric = int(fields[3], 16), int(fields[6])
        except ValueError:
            continue
        if flags & 0x1:  # RTF_UP
            rows.append((metric, position, fields[0]))
    return list(dict.fromkeys(name for _, _, name in sorted(rows)))


def _read_route(paths: HostPaths) -> str:
    try:
        return paths.proc_net_route.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
