"""The primary NIC on macOS: the hardware MAC of the default-route port from IOKit (ioreg) or
networksetup, never the private Wi-Fi address the interface shows."""

from __future__ import annotations

import logging
import plistlib
import re
from collections.abc import Mapping, Sequence

from cooee_agent.discovery.commands import Runner
from cooee_agent.discovery.model import Nic
from cooee_agent.discovery.network.macs import colon_mac, natural_key, usable_mac
from cooee_agent.errors import ProbeError
from cooee_agent.identity.canonical import is_locally_administered

log = logging.getLogger(__name__)

IOREG_MAC_COMMAND = ("ioreg", "-a", "-r", "-k", "IOMACAddress", "-d", "2")
NETWORKSETUP_COMMAND = ("networksetup", "-listallhardwareports")


def darwin_primary(
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
            return Nic(name, colon_mac(hardware[name]), True, f"default route; {source}")
    current = dict(addresses) if addresses is not None else psutil_addresses()
    for name in defaults:
        mac = usable_mac(current.get(name))
        if mac is not None and not hardware:
            permanent = not is_locally_administered(mac)
            return Nic(name, colon_mac(mac), permanent, "default route; current address (no ioreg)")
    if hardware:
        name = sorted(hardware, key=lambda item: (item != "en0", natural_key(item)))[0]
        reason = f"default route via {defaults[0]} has no hardware MAC" if defaults else ""
        why = f"{reason or 'no default route'}; {source}, en0 first then by name"
        return Nic(name, colon_mac(hardware[name]), True, why)
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
            usable = usable_mac(own.hex())
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
            mac = usable_mac(address.group(1))
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
