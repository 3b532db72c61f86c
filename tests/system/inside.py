"""Steps inside a booted container: install the packages, read the Leader, configure the agent."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from typing import Any, TypeVar

from nspawn import Container

LEADER_STATE = "/var/lib/cooee-leader"
AGENT_STATE = "/var/lib/cooee-agent"
CONFIG = "/etc/cooee-agent/config.toml"
# The Leader keeps the shipped 0.0.0.0:4001; the agent listens elsewhere on the same host.
AGENT_LISTEN = "/ip4/127.0.0.1/tcp/4002"

T = TypeVar("T")


def until(probe: Callable[[], T | None], timeout: float, what: str, step: float = 0.2) -> T:
    """Poll ``probe`` until it returns something other than None or False."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def install(box: Container, *debs: str) -> str:
    """dpkg -i with nothing on stdin: a question on the terminal would fail the install."""
    result = box.run(["dpkg", "-i", *debs], env={"DEBIAN_FRONTEND": "noninteractive"})
    return result.stdout + result.stderr


def leader(box: Container, *args: str) -> str:
    """``cooee-agent leader ARGS`` as the Leader's user, on the Leader's state."""
    as_leader = ["runuser", "-u", "cooee-leader", "--", "env", f"COOEE_STATE_DIR={LEADER_STATE}"]
    return box.run([*as_leader, "cooee-agent", "leader", *args]).stdout


def hosts(box: Container) -> list[dict[str, Any]]:
    return list(json.loads(leader(box, "list", "--json")))


def the_host(box: Container, **expected: object) -> dict[str, Any] | None:
    """The one registered host when it has every ``expected`` value, else None."""
    found = hosts(box)
    if len(found) != 1:
        return None
    host = found[0]
    return host if all(host.get(k) == v for k, v in expected.items()) else None


def agent_config(box: Container, *, interval: int = 2, extra: str = "") -> str:
    bundle = json.loads(leader(box, "bundle", "--json"))["bundle"]
    (addr,) = box.run(["cat", f"{LEADER_STATE}/leader.addrs"]).stdout.split()
    dial = addr.replace("/ip4/0.0.0.0/", "/ip4/127.0.0.1/")
    return (
        f"{extra}"
        f"[leader]\nkeys = [{json.dumps(bundle)}]\n\n"
        f'[mesh]\nlisten = "{AGENT_LISTEN}"\nbootstrap = ["{dial}"]\n\n'
        f"[heartbeat]\ninterval = {interval}\njitter = 0\n"
    )


def write_config(box: Container, text: str) -> None:
    # A redirect keeps the file's owner and mode (root:cooee-agent 0640, set by the package).
    box.run(["sh", "-c", f"cat > {shlex.quote(CONFIG)}"], input=text)


def enrolled(box: Container, *, interval: int = 2) -> dict[str, Any]:
    """Both packages installed, the agent configured for the local Leader, enabled and online."""
    install(box, *_debs(box))
    write_config(box, agent_config(box, interval=interval))
    box.run(["systemctl", "enable", "--now", "cooee-agent"])
    return until(lambda: the_host(box, online=True), 60, "the agent online at the Leader")


def _debs(box: Container) -> list[str]:
    """The first version of both packages, from the bound directory."""
    names = box.run(["sh", "-c", "ls /mnt/debs/*-1_*.deb"]).stdout.split()
    return sorted(names)


def show(box: Container, unit: str, prop: str) -> str:
    return box.run(["systemctl", "show", "--value", "-p", prop, unit]).stdout.strip()


def journal(box: Container, unit: str, *args: str) -> list[dict[str, Any]]:
    out = box.run(["journalctl", "--no-pager", "-o", "json", "-u", unit, *args]).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def messages(box: Container, unit: str, *args: str) -> list[str]:
    return [str(entry.get("MESSAGE", "")) for entry in journal(box, unit, *args)]
