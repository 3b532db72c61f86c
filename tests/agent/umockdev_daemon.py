"""Child of test_daemon_umockdev: the daemon with the real udev watcher and AMD probe, under
umockdev-wrapper; a fake AMD GPU is added and removed; prints one JSON line per step."""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# python3-gi is a Debian package: it lives with the system Python, not in the virtualenv.
sys.path.append("/usr/lib/python3/dist-packages")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import gi

gi.require_version("UMockdev", "1.0")
from daemon_support import FakeHost, StandInLeader, agent_config  # noqa: E402
from gi.repository import UMockdev  # noqa: E402

from cooee_agent.agent.change_watchers import UdevWatcher  # noqa: E402
from cooee_agent.agent.daemon import AgentDaemon  # noqa: E402
from cooee_agent.agent.usage import Usage  # noqa: E402
from cooee_agent.bus.memory import MemoryBus  # noqa: E402
from cooee_agent.discovery.gpu import amd, run_isolated  # noqa: E402
from cooee_agent.discovery.inventory import assign_slots  # noqa: E402


def add_gpu(testbed: Any, index: int) -> tuple[Any, Any]:
    address = f"0000:{index + 3:02x}:00.0"
    pci = testbed.add_device(
        "pci",
        address,
        None,
        ["vendor", "0x1002", "device", "0x744c", "revision", "0xc8", "class", "0x030000",
         "mem_info_vram_total", str(24 * 2**30), "mem_info_vram_used", str(2**30),
         "gpu_busy_percent", "3"],
        ["PCI_SLOT_NAME", address, "DRIVER", "amdgpu"],
    )  # fmt: skip
    card = testbed.add_device(
        "drm", f"card{index}", pci, ["dev", f"226:{index}"], ["DEVNAME", f"/dev/dri/card{index}"]
    )
    testbed.uevent(card, "add")
    return pci, card


def amd_gpus() -> Any:
    gpus, failures = run_isolated(amd.PROBE, lambda: amd.probe())
    return gpus, failures


def report(step: str, **values: Any) -> None:
    print(json.dumps({"step": step, **values}), flush=True)


def wait(predicate: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def main() -> None:
    testbed = UMockdev.Testbed.new()
    add_gpu(testbed, 0)
    tmp = Path(tempfile.mkdtemp(prefix="cooee-umockdev-"))
    bus = MemoryBus()
    leader = StandInLeader(tmp / "leader", bus.join("leader"))
    host = FakeHost()
    fake_discover = host.discover

    def discover(config: Any) -> Any:
        gpus, _ = amd_gpus()
        slotted, _ = assign_slots(gpus)
        host.gpus = []
        return dataclasses.replace(fake_discover(config), gpus=slotted)

    def usage(config: Any) -> Any:
        return lambda: Usage(*amd_gpus())

    daemon = AgentDaemon(
        agent_config(tmp / "agent", leader.bundle),
        transport_factory=lambda config: bus.join("agent"),
        discover=discover,
        usage=usage,
        watchers=lambda d: [
            UdevWatcher(lambda change: d.request_rediscovery(", ".join(change.details)), quiet=0.2)
        ],
        pinger=lambda progress: None,
        tick=0.02,
    )
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()

    def slots() -> list[str]:
        return [s.gpu_id for s in daemon.assignment.slots] if daemon.assignment else []

    def settled(count: int) -> bool:
        return daemon.enrolment_state == "enrolled" and len(slots()) == count

    wait(lambda: settled(1))
    report("start", slots=slots(), host_id=getattr(daemon.assignment, "host_id", None))
    _, card = add_gpu(testbed, 1)
    wait(lambda: settled(2))
    report("add", slots=slots(), host_id=getattr(daemon.assignment, "host_id", None))
    testbed.uevent(card, "remove")
    testbed.remove_device(card)
    wait(lambda: settled(1))
    report(
        "remove",
        slots=slots(),
        host_id=getattr(daemon.assignment, "host_id", None),
        accepted=len(leader.accepted()),
    )
    daemon.stop()
    thread.join(10)


if __name__ == "__main__":
    main()
