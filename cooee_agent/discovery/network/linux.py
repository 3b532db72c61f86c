"""The primary NIC on Linux: read sysfs, follow bonds, bridges and VLANs down to a physical NIC,
and prefer its burned-in MAC (ethtool's permaddr) over the current one."""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cooee_agent.discovery.model import Nic
from cooee_agent.discovery.network.macs import colon_mac, natural_key, usable_mac
from cooee_agent.errors import ProbeError

log = logging.getLogger(__name__)

# uapi/linux/netdevice.h: how the kernel came by an interface's current address.
NET_ADDR_PERM, NET_ADDR_RANDOM, NET_ADDR_STOLEN, NET_ADDR_SET = 0, 1, 2, 3
_ASSIGN_NAMES = {0: "permanent", 1: "random", 2: "stolen", 3: "set"}
# uapi/linux/sockios.h and ethtool.h: read the burned-in address the driver reports.
_SIOCETHTOOL = 0x8946
_ETHTOOL_GPERMADDR = 0x00000020
_MAX_ADDR_LEN = 32
_MAX_LOWER_DEPTH = 4

PermaddrReader = Callable[[str], "str | None"]


@dataclass(frozen=True, slots=True)
class Link:
    """What sysfs says about one network interface."""

    name: str
    address: str | None  # normalised 12 hex digits, or None when unusable (lo, infiniband)
    assign_type: int | None
    physical: bool  # has a parent device (PCI, USB, SDIO), i.e. not under devices/virtual
    wireless: bool
    lowers: tuple[str, ...]  # bond slaves, bridge ports, VLAN parents


def read_links(sysfs_root: Path, addresses: Mapping[str, str] | None = None) -> dict[str, Link]:
    """Every interface under <sysfs_root>/class/net, read without following anything outside."""
    net = sysfs_root / "class" / "net"
    links: dict[str, Link] = {}
    try:
        entries = sorted(net.iterdir())
    except OSError:
        return links
    for entry in entries:
        name = entry.name
        raw = _read(entry / "address")
        if raw is None and addresses is not None:
            raw = addresses.get(name)
        links[name] = Link(
            name=name,
            address=usable_mac(raw),
            assign_type=_int(_read(entry / "addr_assign_type")),
            physical=(entry / "device").exists() and "/devices/virtual/" not in _resolve(entry),
            wireless=(entry / "wireless").exists() or (entry / "phy80211").exists(),
            lowers=_lowers(entry),
        )
    return links


def linux_primary(
    defaults: Sequence[str],
    *,
    sysfs_root: Path,
    permaddr: PermaddrReader,
    addresses: Mapping[str, str] | None = None,
) -> Nic:
    """Linux choice: default-route NIC (through bonds, bridges, VLANs), else a fixed order."""
    links = read_links(sysfs_root, addresses)
    if not links:
        raise ProbeError("no-interfaces", f"no network interfaces under {sysfs_root}/class/net")
    notes: list[str] = []
    unstable: Nic | None = None
    virtual: Nic | None = None
    for name in defaults:
        if name not in links:
            notes.append(f"default route via {name}, which sysfs does not list")
            continue
        physical = _physical_below(name, links, 0)
        if not physical:
            notes.append(f"default route via {name}, a virtual interface with no physical NIC")
            # Containers only have virtual NICs; their default-route MAC is the last resort.
            virtual = virtual or _nic_for(
                links[name], permaddr, f"default route via {name}, a virtual interface"
            )
            continue
        via = "" if physical[0] == name else f" via {name}"
        nic = _nic_for(links[physical[0]], permaddr, f"default route{via}")
        if nic is not None and nic.permanent:
            return nic
        if nic is None:
            notes.append(f"default route via {name}, whose NIC has no usable MAC")
            continue
        # A random or set address changes with the network: a NIC with a burned-in one wins.
        notes.append(f"default route via {name}, whose MAC is not permanent")
        unstable = unstable or nic
    # No default route (or only through tunnels): the same host must still pick the same NIC.
    candidates = []
    for link in links.values():
        if not link.physical:
            continue
        nic = _nic_for(link, permaddr, "")
        if nic is not None:
            candidates.append((not nic.permanent, link.wireless, natural_key(link.name), nic))
    if not candidates and unstable is not None:
        return unstable
    if not candidates and virtual is not None:
        why = f"{virtual.why}; no physical NIC on this host (a container?)"
        return Nic(virtual.name, virtual.mac, permanent=False, why=why)
    if not candidates:
        tried = "; ".join(notes) or "no default route"
        raise ProbeError(
            "no-usable-mac", f"{tried}; no physical NIC with a usable MAC in {sysfs_root}/class/net"
        )
    candidates.sort(key=lambda row: row[:3])
    chosen = candidates[0][3]
    if unstable is not None and not chosen.permanent:
        return unstable
    reason = "; ".join(notes) if notes else "no default route"
    why = f"{reason}; first physical NIC (permanent MAC, wired, then by name)"
    return Nic(name=chosen.name, mac=chosen.mac, permanent=chosen.permanent, why=why)


def _physical_below(name: str, links: Mapping[str, Link], depth: int) -> list[str]:
    """The physical NICs at or under an interface, ordered by name (bond slaves, bridge ports)."""
    link = links.get(name)
    if link is None or depth > _MAX_LOWER_DEPTH:
        return []
    if link.physical:
        return [name]
    found: list[str] = []
    for lower in sorted(link.lowers, key=natural_key):
        found.extend(item for item in _physical_below(lower, links, depth + 1) if item not in found)
    return found


def _nic_for(link: Link, permaddr: PermaddrReader, why: str) -> Nic | None:
    """The NIC value for a physical link: its burned-in MAC where one is known."""
    try:
        burned = usable_mac(permaddr(link.name))
    except OSError as error:
        log.debug("permaddr of %s unreadable: %s", link.name, error)
        burned = None
    base = why or "chosen"
    if burned is not None:
        how = "permanent address" if burned == link.address else "permaddr, not the current MAC"
        return Nic(link.name, colon_mac(burned), True, f"{base}; {how}")
    if link.address is None:
        return None
    kind = _ASSIGN_NAMES.get(link.assign_type or -1, "unknown")
    permanent = link.assign_type == NET_ADDR_PERM
    return Nic(link.name, colon_mac(link.address), permanent, f"{base}; {kind} address")


def ethtool_permaddr(name: str) -> str | None:
    """The burned-in MAC via SIOCETHTOOL/ETHTOOL_GPERMADDR (what ``ip link`` shows as permaddr)."""
    import array
    import fcntl

    buffer = array.array("B", struct.pack("II", _ETHTOOL_GPERMADDR, _MAX_ADDR_LEN))
    buffer.extend(bytes(_MAX_ADDR_LEN))
    pointer, _ = buffer.buffer_info()
    request = struct.pack("16sP", name.encode()[:15], pointer)
    request += bytes(40 - len(request))  # struct ifreq is 40 bytes on 64-bit Linux
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock.fileno(), _SIOCETHTOOL, request)
    size = struct.unpack_from("I", buffer, 4)[0]
    if size != 6:
        return None
    data = bytes(buffer[8:14])
    return None if data == bytes(6) else data.hex(":")


def _lowers(entry: Path) -> tuple[str, ...]:
    names: set[str] = set()
    try:
        for child in entry.iterdir():
            if child.name.startswith("lower_"):
                names.add(child.name[len("lower_") :])
    except OSError:
        pass
    slaves = _read(entry / "bonding" / "slaves")
    if slaves:
        names.update(slaves.split())
    with contextlib.suppress(OSError):
        names.update(port.name for port in (entry / "brif").iterdir())
    return tuple(sorted(names))


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _resolve(entry: Path) -> str:
    try:
        return str(entry.resolve()) + "/"
    except OSError:
        return ""
