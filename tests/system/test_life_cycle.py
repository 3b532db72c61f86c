"""The packages' life under a real systemd: install, run, restart, reload, watchdog, upgrade,
remove and purge, each in a freshly booted Debian bookworm (systemd-nspawn, systemd as PID 1)."""

from __future__ import annotations

import time

import pytest
from conftest import Debs
from inside import (
    AGENT_STATE,
    CONFIG,
    LEADER_STATE,
    agent_config,
    enrolled,
    install,
    journal,
    messages,
    show,
    the_host,
    until,
    write_config,
)
from nspawn import Container

pytestmark = pytest.mark.timeout(600)


def test_install_enable_and_the_leader_sees_the_agent_online(
    container: Container, debs: Debs
) -> None:
    out = install(
        container,
        debs.inside("cooee-agent", debs.version),
        debs.inside("cooee-leader", debs.version),
    )
    # Not configured, so the agent is not started; the Leader needs nothing and is running.
    assert "cooee-agent: not started: set [leader] keys" in out
    assert show(container, "cooee-agent", "ActiveState") == "inactive"
    assert show(container, "cooee-leader", "ActiveState") == "active"
    assert show(container, "cooee-leader", "StatusText").startswith("Leader serving on")
    stat = container.run(["stat", "-c", "%a %U:%G", CONFIG, AGENT_STATE, LEADER_STATE]).stdout
    assert stat.split("\n")[:3] == [
        "640 root:cooee-agent",
        "700 cooee-agent:cooee-agent",
        "700 cooee-leader:cooee-leader",
    ]

    write_config(container, agent_config(container))
    started = time.monotonic()
    container.run(["systemctl", "enable", "--now", "cooee-agent"])
    host = until(lambda: the_host(container, online=True), 60, "the agent online at the Leader")
    print(f"online at the Leader {time.monotonic() - started:.1f} s after enable --now")
    assert host["status"] == "active" and host["host_id"] is not None

    status = container.run(["systemctl", "status", "--no-pager", "cooee-agent"]).stdout
    assert "Status: " in status
    assert show(container, "cooee-agent", "StatusText") != ""

    agent_fields = journal(container, "cooee-agent")
    assert any(e.get("COOEE_HOST_ID") == str(host["host_id"]) for e in agent_fields)
    assert {e.get("SYSLOG_IDENTIFIER") for e in agent_fields} >= {"cooee-agent"}
    leader_fields = journal(container, "cooee-leader")
    assert any(
        e.get("COOEE_HOST_ID") == str(host["host_id"])
        and e.get("SYSLOG_IDENTIFIER") == "cooee-leader"
        for e in leader_fields
    )

    container.run(["systemctl", "stop", "cooee-agent"])
    until(lambda: the_host(container, state="left"), 30, "the Leader to see the agent leave")


def test_leader_and_agent_on_one_host_survive_a_leader_restart(container: Container) -> None:
    host = enrolled(container)
    before = the_host(container)
    assert before is not None
    leader_pid = show(container, "cooee-leader", "MainPID")
    container.run(["systemctl", "restart", "cooee-leader"])
    assert show(container, "cooee-leader", "MainPID") != leader_pid
    # The same host, under the same host_id, heard again after the restart: nothing lost.
    after = until(
        lambda: (
            the_host(container, online=True, host_id=host["host_id"])
            if (the_host(container) or {}).get("seq", 0) > before["seq"] + 1
            else None
        ),
        60,
        "heartbeats to resume at the restarted Leader",
    )
    assert after["hostname"] == host["hostname"] and after["mac"] == host["mac"]
    assert after["slots"][0]["token"] == host["slots"][0]["token"]


def test_reload_applies_a_new_interval_and_refuses_a_broken_config(
    container: Container,
) -> None:
    enrolled(container, interval=2)
    until(lambda: the_host(container, interval_s=2), 30, "interval 2 at the Leader")
    agent_pid = show(container, "cooee-agent", "MainPID")
    write_config(container, agent_config(container, interval=3))
    container.run(["systemctl", "reload", "cooee-agent"])
    until(lambda: the_host(container, interval_s=3), 30, "interval 3 at the Leader")

    # Out of range (1 to 3600): the whole file is refused, not just that key.
    write_config(container, agent_config(container, interval=0))
    container.run(["systemctl", "reload", "cooee-agent"])
    refused = until(
        lambda: [m for m in messages(container, "cooee-agent") if "reload refused" in m] or None,
        30,
        "the journal to say the reload was refused",
    )
    assert "interval" in refused[0] and CONFIG in refused[0], refused
    assert show(container, "cooee-agent", "ActiveState") == "active"
    assert show(container, "cooee-agent", "MainPID") == agent_pid
    # Still the old configuration: heartbeats keep coming at 3 s.
    seq = (the_host(container) or {})["seq"]
    until(
        lambda: (
            the_host(container, online=True, interval_s=3)
            if (the_host(container) or {})["seq"] > seq
            else None
        ),
        30,
        "a heartbeat after the refused reload",
    )


@pytest.mark.parametrize("unit", ["cooee-agent", "cooee-leader"])
def test_watchdog_restarts_a_stopped_main_process(container: Container, unit: str) -> None:
    enrolled(container)
    watchdog_s = int(show(container, unit, "WatchdogUSec").removesuffix("s") or 0)
    restart_s = float(show(container, unit, "RestartUSec").removesuffix("s") or 0)
    assert watchdog_s == 30 and restart_s == 5
    pid = show(container, unit, "MainPID")
    container.run(["systemctl", "kill", "--kill-whom=main", "--signal=SIGSTOP", unit])
    stopped = time.monotonic()
    # Killed by WatchdogSec after its last ping (at most WatchdogSec/4 before the SIGSTOP), then
    # started again RestartSec later; a few seconds more for the new process to be READY.
    new_pid = until(
        lambda: (
            (p := show(container, unit, "MainPID")) not in (pid, "0")
            and show(container, unit, "ActiveState") == "active"
            and p
        ),
        watchdog_s + restart_s + 15,
        f"systemd to restart {unit}",
        step=0.5,
    )
    print(f"{unit} restarted {time.monotonic() - stopped:.1f} s after SIGSTOP")
    assert new_pid != pid
    assert any("Watchdog timeout" in m for m in messages(container, unit))
    if unit == "cooee-agent":
        until(lambda: the_host(container, online=True), 60, "the restarted agent online")


def test_upgrade_keeps_keys_host_id_and_config_and_restarts_once(
    container: Container, debs: Debs
) -> None:
    host = enrolled(container)
    fingerprint = ["sh", "-c", f"sha256sum {AGENT_STATE}/*.key {AGENT_STATE}/*.age {CONFIG}"]
    files_before = container.run(fingerprint).stdout
    agent_pid = show(container, "cooee-agent", "MainPID")
    # Starts are told apart by their invocation id, not by time: journald stamps an entry when
    # it reads it, and on a loaded machine the first start's entries were read after a
    # timestamp taken once the agent had enrolled.
    before = until(lambda: starts(container) or None, 30, "the agent's first start in the journal")
    out = install(
        container,
        debs.inside("cooee-agent", debs.next_version),
        debs.inside("cooee-leader", debs.next_version),
    )
    assert "Configuration file" not in out, out  # dpkg asked nothing about the conffile
    versions = container.run(
        ["dpkg-query", "-W", "-f", "${Version}\\n", "cooee-agent", "cooee-leader"]
    ).stdout.split()
    assert versions == [debs.next_version] * 2
    assert container.run(fingerprint).stdout == files_before
    assert show(container, "cooee-agent", "MainPID") != agent_pid
    new_invocation = show(container, "cooee-agent", "InvocationID")
    upgraded = until(
        lambda: [i for i in starts(container) if i not in before] or None,
        30,
        "the upgraded agent's start in the journal",
    )
    # One start since the upgrade began, the unit's current one; on failure, the journal says why.
    assert upgraded == [new_invocation], messages(container, "cooee-agent")
    assert show(container, "cooee-agent", "UnitFileState") == "enabled"
    after = until(
        lambda: the_host(container, online=True, host_id=host["host_id"]),
        60,
        "the upgraded agent online under its host_id",
    )
    assert after["slots"][0]["token"] == host["slots"][0]["token"]


def test_remove_keeps_config_and_state_and_purge_removes_them(container: Container) -> None:
    enrolled(container)
    apt = ["apt-get", "-y", "-q"]
    noninteractive = {"DEBIAN_FRONTEND": "noninteractive"}
    container.run([*apt, "remove", "cooee-leader", "cooee-agent"], env=noninteractive)
    for unit in ("cooee-agent", "cooee-leader"):
        assert show(container, unit, "ActiveState") == "inactive"
    kept = [
        CONFIG,
        f"{AGENT_STATE}/agent-signing.key",
        f"{LEADER_STATE}/leader-signing.key",
        f"{LEADER_STATE}/registry.sqlite3",
    ]
    left = container.run(["sh", "-c", f"ls -d {' '.join(kept)} 2>&1 || true"]).stdout
    assert "No such file" not in left, left
    status = container.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Abbrev}\\n", "cooee-agent", "cooee-leader"]
    ).stdout.split()
    assert status == ["rc", "rc"]

    container.run([*apt, "purge", "cooee-leader", "cooee-agent"], env=noninteractive)
    for path in ("/etc/cooee-agent", AGENT_STATE, LEADER_STATE):
        assert container.run(["test", "-e", path], check=False).returncode == 1, path
    # What purge leaves, per Debian practice: the system users (their uids may own files).
    for user in ("cooee-agent", "cooee-leader"):
        assert container.run(["getent", "passwd", user], check=False).returncode == 0


def _as_the_service(container: Container, unit: str, script: str) -> tuple[int, str]:
    """``script`` run inside the running service: its cgroup (device policy), its mount
    namespace (ProtectSystem, ProtectHome, PrivateTmp) and its user; returns (rc, output)."""
    pid = show(container, unit, "MainPID")
    user = show(container, unit, "User")
    cgroup = show(container, unit, "ControlGroup")
    result = container.run(
        [
            "sh",
            "-c",
            f"echo $$ > /sys/fs/cgroup{cgroup}/cgroup.procs && exec nsenter -t {pid} -m "
            f'-S "$(id -u {user})" -G "$(id -g {user})" -- /bin/sh -c "$0"',
            script,
        ],
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


def test_hardening_holds_inside_the_running_agent(container: Container) -> None:
    enrolled(container)
    probes = {
        "write /usr": "touch /usr/cooee-probe",
        "write /etc": "touch /etc/cooee-probe",
        "read /home": "ls /home",
        "open /dev/net/tun": "/opt/cooee-agent/bin/python -c \"open('/dev/net/tun', 'rb')\"",
    }
    refusals = {}
    for what, script in probes.items():
        rc, out = _as_the_service(container, "cooee-agent", script)
        assert rc != 0, f"{what} succeeded inside the service: {out}"
        refusals[what] = out
    assert "Read-only file system" in refusals["write /usr"]
    assert "Read-only file system" in refusals["write /etc"]
    assert "Permission denied" in refusals["read /home"]
    # The node exists and is 0666: only the device policy (cgroup BPF) refuses it.
    assert "Operation not permitted" in refusals["open /dev/net/tun"]
    rc, out = _as_the_service(container, "cooee-agent", "ls /dev/net/tun; ls /sys/class/net")
    assert rc == 0 and "lo" in out.split(), out
    if container.run(["test", "-d", "/sys/class/drm"], check=False).returncode == 0:
        rc, out = _as_the_service(container, "cooee-agent", "ls /sys/class/drm")
        assert rc == 0, out
    # The same probes outside the service, as the same user, succeed where only the service's
    # sandbox stands in the way: the refusals above are the unit's doing.
    open_tun = ["/opt/cooee-agent/bin/python", "-c", "open('/dev/net/tun', 'rb')"]
    outside = container.run(["runuser", "-u", "cooee-agent", "--", *open_tun], check=False)
    assert outside.returncode == 0, outside.stderr
    # What discovery needs still works under the sandbox: the agent found its NIC and enrolled.
    assert show(container, "cooee-agent", "ActiveState") == "active"


def starts(container: Container) -> list[str]:
    """The invocation ids of the agent unit's starts, in the order the journal has them."""
    container.run(["journalctl", "--sync"])
    return [
        str(entry.get("INVOCATION_ID"))
        for entry in journal(container, "cooee-agent")
        if str(entry.get("MESSAGE", "")).startswith("Started")
    ]
