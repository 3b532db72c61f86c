"""The primary MAC: the permanent address of the physical NIC that carries the default route.

``route`` finds the default-route interfaces, ``linux`` and ``darwin`` choose the NIC below them.
"""

from __future__ import annotations

from collections.abc import Mapping

from cooee_agent.discovery.commands import Runner, run_command
from cooee_agent.discovery.host_paths import HostPaths
from cooee_agent.discovery.model import Nic
from cooee_agent.discovery.network.darwin import darwin_primary
from cooee_agent.discovery.network.linux import PermaddrReader, ethtool_permaddr, linux_primary
from cooee_agent.discovery.network.route import DefaultInterfaces, netifaces_default_interfaces


def primary_nic(
    *,
    system: str,
    paths: HostPaths = HostPaths(),
    default_interfaces: DefaultInterfaces | None = None,
    permaddr: PermaddrReader | None = None,
    runner: Runner | None = None,
    addresses: Mapping[str, str] | None = None,
) -> Nic:
    """Pick the interface whose MAC names this host; raise ProbeError when none is usable.

    ``paths`` says where sysfs and procfs are. Every other source is injectable so fixtures can
    stand in for the machine: ``default_interfaces`` returns the default-route interfaces in
    preference order (netifaces by default, the kernel's route table without it), ``permaddr``
    reads a NIC's burned-in MAC (the ethtool ioctl by default), ``runner`` runs macOS's
    ``ioreg``/``networksetup`` and ``addresses`` maps interface names to their current MAC
    (psutil by default, used where sysfs is absent).
    """
    if default_interfaces is None:
        defaults = netifaces_default_interfaces(paths)
    else:
        defaults = list(default_interfaces())
    if system == "darwin":
        return darwin_primary(defaults, runner or run_command, addresses)
    return linux_primary(
        defaults,
        sysfs_root=paths.sysfs,
        permaddr=permaddr or ethtool_permaddr,
        addresses=addresses,
    )
