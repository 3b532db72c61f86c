"""mDNS discovery between two mesh nodes, run only inside a network namespace made here."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CHILD = HERE / "mdns_child.py"

# Loopback in a fresh namespace is down and not multicast-capable; zeroconf needs both and a
# route for 224.0.0.251. None of this touches the host's interfaces.
NAMESPACE_SETUP = (
    "ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo"
)


def need_namespace() -> None:
    """Skip where the runner may not make a network namespace (a container without
    CAP_SYS_ADMIN): that is the machine's limit, not ours. Missing tools are ours: setup
    installs them, so CI fails without them."""
    missing = [tool for tool in ("unshare", "ip") if shutil.which(tool) is None]
    if missing:
        reason = f"{' and '.join(missing)} not installed"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (scripts/setup installs them)")
        pytest.skip(reason)
    probe = subprocess.run(
        ["unshare", "--net", "--", "sh", "-c", NAMESPACE_SETUP],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        pytest.skip(
            f"cannot make a network namespace here ({probe.stderr.strip()}); "
            "needs root with CAP_SYS_ADMIN"
        )


def run_scenario(work: Path) -> dict[str, Any]:
    script = f"{NAMESPACE_SETUP} && exec {shlex.quote(sys.executable)} {shlex.quote(str(CHILD))}"
    proc = subprocess.run(
        ["unshare", "--net", "--", "sh", "-c", f"{script} scenario {shlex.quote(str(work))}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert proc.returncode == 0, f"scenario failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_mdns_nodes_find_each_other_and_exchange_a_message_and_without_it_they_do_not(
    tmp_path: Path,
) -> None:
    need_namespace()
    result = run_scenario(tmp_path)
    assert result["interfaces"] == ["lo"]

    off = result["mdns_off"]
    assert off["a_peers"] == [] and off["b_peers"] == [], off
    assert not off["found"] and not off["delivered"], off

    on = result["mdns_on"]
    assert on["found"], f"mDNS nodes never connected: {on}"
    assert on["delivered"], f"message never crossed the mDNS-made connection: {on}"
    assert on["a_peers"] == [on["b_id"]] and on["b_peers"] == [on["a_id"]], on
