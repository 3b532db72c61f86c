"""The primary MAC: the permanent address of the physical NIC that carries the default route."""

from __future__ import annotations

import contextlib
import logging
import plistlib
import re
import socket
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cooee_agent.discovery.commands import Runner, run_command
from cooee_agent.discovery.model import Nic
from cooee_agent.errors import IdentityError, ProbeError
from cooee_agent.identity.canonical import is_locally_administered, normalise_mac

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
DefaultInterfaces = Callable[[], Sequence[str]]


@dataclass(frozen=True, slots=True)
class Link:
    """What sysfs says about one network interface."""

    name: str
    address: str | None  # normalised 12 hex digits, or None when unusable (lo, infiniband)
    assign_type: int | None
    physical: bool  # has a parent device (PCI, USB, SDIO), i.e. not under devices/virtual
    wireless: bool
    lowers: tuple[str, ...]  # bond slaves, bridge ports, VLAN parents


def primary_nic(
    *,
    system: str,
    sysfs_root: Path = Path("/sys"),
    default_interfaces: DefaultInterfaces | None = None,
    permaddr: PermaddrReader | None = None,
    runner: Runner | None = None,
    addresses: Mapping[str, str] | None = None,
) -> Nic:
    """Pick the interface whose MAC names this host; raise ProbeError when none is usable.

    Every source is injectable so fixtures can stand in for the machine: ``default_interfaces``
    returns the default-route interfaces in preference order (netifaces by default),
    ``permaddr`` reads a NIC's burned-in MAC (the ethtool ioctl by default), ``runner`` runs
    macOS's ``ioreg``/``networksetup`` and ``addresses`` maps interface names to their current
    MAC (psutil by default, used where sysfs is absent).
    """
    defaults = list((default_interfaces or netifaces_default_interfaces)())
    if system == "darwin":
        return _darwin_primary(defaults, runner or run_command, addresses)
    return linux_primary(
        defaults,
        sysfs_root=sysfs_root,
        permaddr=permaddr or ethtool_permaddr,
        addresses=addresses,
    )


# --- default route -------------------------------------------------------------------------------


def netifaces_default_interfaces() -> list[str]:
    """Default-route interfaces from netifaces: IPv4 first, then IPv6, each listed once."""
    try:
        import netifaces
    except ImportError:  # the package is optional on odd platforms: fall back to /proc
        return proc_route_default_interfaces(_read(Path("/proc/net/route")) or "")
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


# --- Linux ---------------------------------------------------------------------------------------


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
            address=_usable_mac(raw),
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
            candidates.append((not nic.permanent, link.wireless, _natural(link.name), nic))
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
    for lower in sorted(link.lowers, key=_natural):
        found.extend(item for item in _physical_below(lower, links, depth + 1) if item not in found)
    return found


def _nic_for(link: Link, permaddr: PermaddrReader, why: str) -> Nic | None:
    """The NIC value for a physical link: its burned-in MAC where one is known."""
    try:
        burned = _usable_mac(permaddr(link.name))
    except OSError as error:
        log.debug("permaddr of %s unreadable: %s", link.name, error)
        burned = None
    base = why or "chosen"
    if burned is not None:
        how = "permanent address" if burned == link.address else "permaddr, not the current MAC"
        return Nic(link.name, _colon(burned), True, f"{base}; {how}")
    if link.address is None:
        return None
    kind = _ASSIGN_NAMES.get(link.assign_type or -1, "unknown")
    permanent = link.assign_type == NET_ADDR_PERM
    return Nic(link.name, _colon(link.address), permanent, f"{base}; {kind} address")


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


# --- macOS ---------------------------------------------------------------------------------------

IOREG_MAC_COMMAND = ("ioreg", "-a", "-r", "-k", "IOMACAddress", "-d", "2")
NETWORKSETUP_COMMAND = ("networksetup", "-listallhardwareports")


def _darwin_primary(
    defaults: Sequence[str], runner: Runner, addresses: Mapping[str, str] | None
) -> Nic:
    """macOS: the hardware MAC (not the private Wi-Fi address) of the default-route port."""
    hardware: dict[str, str] = {}
    source = "ioreg IOMACAddress"
    try:
        hardware = parse_ioreg_macs(runner(IOREG_MAC_COMMAND))
    except Exception as error:  # a failed or odd ioreg must not hide networksetup
        log.debug("ioreg failed: %s", error)
    if not hardware:
        source = "networksetup hardware port"
        try:
            hardware = parse_networksetup(runner(NETWORKSETUP_COMMAND))
        except Exception as error:
            log.debug("networksetup failed: %s", error)
    for name in defaults:
        if name in hardware:
            return Nic(name, _colon(hardware[name]), True, f"default route; {source}")
    current = dict(addresses) if addresses is not None else psutil_addresses()
    for name in defaults:
        mac = _usable_mac(current.get(name))
        if mac is not None and not hardware:
            permanent = not is_locally_administered(mac)
            return Nic(name, _colon(mac), permanent, "default route; current address (no ioreg)")
    if hardware:
        name = sorted(hardware, key=lambda item: (item != "en0", _natural(item)))[0]
        reason = f"default route via {defaults[0]} has no hardware MAC" if defaults else ""
        why = f"{reason or 'no default route'}; {source}, en0 first then by name"
        return Nic(name, _colon(hardware[name]), True, why)
    raise ProbeError("no-usable-mac", "neither ioreg nor networksetup reported a hardware MAC")


def parse_ioreg_macs(text: str) -> dict[str, str]:
    """Map BSD names to IOMACAddress from ``ioreg -a`` (a plist of registry entries)."""
    root = plistlib.loads(text.encode("utf-8"))
    found: dict[str, str] = {}

    def walk(entry: object, inherited: bytes | None) -> None:
        if isinstance(entry, list):
            for item in entry:
                walk(item, inherited)
            return
        if not isinstance(entry, dict):
            return
        mac = entry.get("IOMACAddress")
        own = mac if isinstance(mac, bytes) and len(mac) == 6 else inherited
        name = entry.get("BSD Name")
        if isinstance(name, str) and own is not None:
            usable = _usable_mac(own.hex())
            if usable is not None:
                found.setdefault(name, usable)
        walk(entry.get("IORegistryEntryChildren", []), own)

    walk(root, None)
    return found


def parse_networksetup(text: str) -> dict[str, str]:
    """Map devices to hardware addresses from ``networksetup -listallhardwareports``."""
    found: dict[str, str] = {}
    for block in re.split(r"\n\s*\n", text):
        device = re.search(r"^Device:\s*(\S+)", block, re.MULTILINE)
        address = re.search(r"^Ethernet Address:\s*(\S+)", block, re.MULTILINE)
        if device and address:
            mac = _usable_mac(address.group(1))
            if mac is not None:
                found[device.group(1)] = mac
    return found


def psutil_addresses() -> dict[str, str]:
    """Current link-layer address of each interface, from psutil."""
    import psutil

    result: dict[str, str] = {}
    for name, entries in psutil.net_if_addrs().items():
        for entry in entries:
            if entry.family == psutil.AF_LINK and entry.address:
                result[name] = entry.address
    return result


# --- helpers -------------------------------------------------------------------------------------


def _usable_mac(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return normalise_mac(value.strip())
    except IdentityError:
        return None


def _colon(digits: str) -> str:
    return ":".join(digits[index : index + 2] for index in range(0, 12, 2))


def _natural(name: str) -> tuple[object, ...]:
    """Sort key putting eth2 before eth10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


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
