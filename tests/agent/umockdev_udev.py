"""Child of test_udev_watcher: runs under umockdev-wrapper, drives a fake GPU, reports JSON lines.

In-process UMockdev.Testbed needs the wrapper's preload library, hence a separate process.
"""

from __future__ import annotations

import json
import queue
import sys
from typing import Any

# python3-gi is a Debian package: it lives with the system Python, not in the virtualenv.
sys.path.append("/usr/lib/python3/dist-packages")

import gi

gi.require_version("UMockdev", "1.0")
import pyudev  # noqa: E402
from gi.repository import UMockdev  # noqa: E402

from cooee_agent.agent.change_watchers import Change, UdevWatcher  # noqa: E402

QUIET = float(sys.argv[1]) if len(sys.argv) > 1 else 0.3


def cards() -> list[str]:
    """What a re-discovery sees: the DRM cards udev knows now."""
    devices = pyudev.Context().list_devices(subsystem="drm")
    return sorted(device.sys_name for device in devices)


def next_change(events: queue.Queue[Change], timeout: float) -> Any:
    try:
        change = events.get(timeout=timeout)
    except queue.Empty:
        return None
    return {"source": change.source, "details": list(change.details)}


def report(step: str, **values: Any) -> None:
    print(json.dumps({"step": step, **values}), flush=True)


def main() -> None:
    testbed = UMockdev.Testbed.new()
    events: queue.Queue[Change] = queue.Queue()
    wait = QUIET * 4 + 1
    with UdevWatcher(events.put, quiet=QUIET):
        report("idle", change=next_change(events, QUIET * 3), cards=cards())

        pci = testbed.add_device(
            "pci",
            "0000:01:00.0",
            None,
            ["vendor", "0x10de", "device", "0x2204", "class", "0x030000"],
            ["PCI_SLOT_NAME", "0000:01:00.0", "DRIVER", "nvidia"],
        )
        card = testbed.add_device(
            "drm", "card1", pci, ["dev", "226:1"], ["DEVNAME", "/dev/dri/card1"]
        )
        testbed.uevent(pci, "add")  # pci is filtered out; only the drm event counts
        testbed.uevent(card, "add")
        report("add", change=next_change(events, wait), cards=cards())

        for _ in range(6):  # a driver reload: a burst of events on the same card
            testbed.uevent(card, "add")
        first = next_change(events, wait)
        report("burst", change=first, again=next_change(events, QUIET * 3))

        testbed.uevent(card, "remove")
        testbed.remove_device(card)
        report("remove", change=next_change(events, wait), cards=cards())

        nic = testbed.add_device("net", "eth7", None, ["address", "02:00:00:00:00:07"], [])
        testbed.uevent(nic, "add")
        report("net", change=next_change(events, wait))

        usb = testbed.add_device("usb", "1-1", None, ["idVendor", "046d"], [])
        testbed.uevent(usb, "add")
        report("other", change=next_change(events, QUIET * 3))


if __name__ == "__main__":
    main()
