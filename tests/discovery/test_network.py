"""The primary MAC: the permanent address of the physical NIC carrying the default route."""

from __future__ import annotations

from pathlib import Path
from subprocess import CalledProcessError
from typing import Any

import pytest
from discovery_support import NETWORK_FIXTURES, load_gateways, load_permaddr

from cooee_agent.discovery import network
from cooee_agent.discovery.host_paths import HostPaths
from cooee_agent.discovery.network import darwin, route
from cooee_agent.discovery.network.linux import ethtool_permaddr
from cooee_agent.errors import ProbeError
from cooee_agent.identity.canonical import normalise_mac

MACOS = NETWORK_FIXTURES / "macos"


def linux(layout: str, *, defaults: list[str] | None = None, permaddr: Any = None) -> Any:
    gateways = load_gateways(layout)
    names = defaults if defaults is not None else route.gateways_default_interfaces(gateways)
    return network.primary_nic(
        system="linux",
        paths=HostPaths(sysfs=NETWORK_FIXTURES / layout / "sys"),
        default_interfaces=lambda: names,
        permaddr=permaddr if permaddr is not None else load_permaddr(layout).get,
    )


def test_bond_default_route_resolves_to_a_physical_slave_and_its_permanent_mac() -> None:
    nic = linux("bond-docker")
    assert (nic.name, nic.mac, nic.permanent) == ("eno1", "3c:ec:ef:10:20:31", True)
    assert "bond0" in nic.why


def test_docker_and_veth_are_never_chosen_even_when_routing_the_default() -> None:
    nic = linux("bond-docker", defaults=["docker0", "veth1c0ffee"])
    assert nic.name == "eno1"
    assert "docker0" in nic.why and "virtual" in nic.why


def test_randomised_wifi_mac_is_replaced_by_its_permanent_address() -> None:
    nic = linux("wifi-random")
    assert (nic.name, nic.mac, nic.permanent) == ("wlp3s0", "18:5e:0f:77:ec:0a", True)


def test_without_permaddr_a_wired_burned_in_mac_beats_the_random_wifi_address() -> None:
    def unreadable(name: str) -> str | None:
        raise OSError(95, "Operation not supported")

    nic = linux("wifi-random", permaddr=unreadable)
    assert (nic.name, nic.permanent) == ("enp0s31f6", True)
    assert "not permanent" in nic.why


def test_no_default_route_picks_the_same_wired_nic_in_natural_order() -> None:
    first = linux("no-default-route")
    assert (first.name, first.mac) == ("eth2", "00:1b:21:aa:bb:02")
    assert "no default route" in first.why
    assert linux("no-default-route") == first


def test_default_route_through_a_tunnel_falls_back_to_the_physical_order() -> None:
    nic = linux("no-default-route", defaults=["wg0"])
    assert nic.name == "eth2" and "wg0" in nic.why


def test_only_random_addresses_still_give_a_mac_marked_not_permanent() -> None:
    nic = linux("bond-docker", permaddr=lambda name: None)
    assert nic.name == "eno1" and not nic.permanent


def test_an_empty_sysfs_is_a_probe_failure_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(ProbeError) as caught:
        network.primary_nic(
            system="linux",
            paths=HostPaths(sysfs=tmp_path),
            default_interfaces=list,
            permaddr=lambda n: None,
        )
    assert caught.value.reason == "no-interfaces" and str(tmp_path) in caught.value.detail


def test_gateways_list_ipv4_default_first_then_ipv6() -> None:
    gateways = load_gateways("wifi-random")
    assert route.gateways_default_interfaces(gateways) == ["wlp3s0"]
    mixed = {"default": {10: ("fe80::1", "wg0"), 2: ("10.0.0.1", "eth0")}, 2: [("1", "eth1", True)]}
    assert route.gateways_default_interfaces(mixed) == ["eth0", "wg0", "eth1"]


def test_proc_net_route_default_rows_by_metric() -> None:
    # Header and rows as in a real Ubuntu 18.10 /proc/net/route (getmac test samples).
    text = (
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT   \n"
        "wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n"
        "ens33\t00000000\t0210A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
        "docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
    )
    assert route.proc_route_default_interfaces(text) == ["ens33", "wlan0"]


def test_real_permaddr_ioctl_answers_or_raises_oserror() -> None:
    try:
        value = ethtool_permaddr("lo")
    except OSError:
        return
    assert value is None or normalise_mac(value)


def replay(outputs: dict[tuple[str, ...], str | Exception]) -> Any:
    def runner(argv: Any) -> str:
        result = outputs.get(tuple(argv), FileNotFoundError(2, "not found", argv[0]))
        if isinstance(result, Exception):
            raise result
        return result

    return runner


IOREG = (MACOS / "ioreg-IOMACAddress.plist").read_text()
NETWORKSETUP = (MACOS / "networksetup-listallhardwareports.txt").read_text()
PRIVATE = {"en0": "3a:1f:22:9c:04:7e"}  # the rotating Private Wi-Fi Address getifaddrs shows


def macos(defaults: list[str], outputs: dict[tuple[str, ...], str | Exception]) -> Any:
    return network.primary_nic(
        system="darwin",
        default_interfaces=lambda: defaults,
        runner=replay(outputs),
        addresses=PRIVATE,
    )


def test_macos_reports_the_hardware_mac_not_the_private_wifi_address() -> None:
    nic = macos(["en0"], {darwin.IOREG_MAC_COMMAND: IOREG})
    assert (nic.name, nic.mac, nic.permanent) == ("en0", "8c:85:90:90:6d:26", True)
    assert "ioreg" in nic.why


def test_macos_falls_back_to_networksetup_when_ioreg_fails() -> None:
    failing = CalledProcessError(1, "ioreg")
    nic = macos(
        ["en8"], {darwin.IOREG_MAC_COMMAND: failing, darwin.NETWORKSETUP_COMMAND: NETWORKSETUP}
    )
    assert (nic.name, nic.mac) == ("en8", "00:e0:4c:68:01:88")


def test_macos_vpn_default_route_uses_en0() -> None:
    nic = macos(["utun3"], {darwin.IOREG_MAC_COMMAND: IOREG})
    assert nic.name == "en0" and "utun3" in nic.why


def test_macos_without_any_hardware_report_uses_the_current_address_as_not_permanent() -> None:
    nic = macos(["en0"], {})
    assert nic.mac == "3a:1f:22:9c:04:7e" and not nic.permanent


def test_parsers_agree_on_the_hardware_addresses() -> None:
    assert darwin.parse_ioreg_macs(IOREG) == darwin.parse_networksetup(NETWORKSETUP)


def test_a_container_with_only_virtual_nics_uses_its_default_route_mac_marked_unstable() -> None:
    nic = linux("container-veth")
    assert (nic.name, nic.mac, nic.permanent) == ("eth0", "02:42:ac:11:00:02", False)
    assert "virtual" in nic.why and "no physical NIC" in nic.why
