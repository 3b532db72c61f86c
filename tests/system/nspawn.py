"""A booted Debian in systemd-nspawn (systemd as PID 1), driven from the host with nsenter.

Every run gets its own cgroup in the name=systemd and unified hierarchies (systemd-nspawn
--keep-unit puts the container there instead of asking a host systemd for a scope, and this
host has none), a read-only view of the cached rootfs with a tmpfs over it (--volatile=overlay:
nothing a test does reaches the cache) and its own network namespace (the Leader's port 4001 on
the container's loopback clashes with nothing on the host; a veth link gives it a MAC).
``stop()`` powers the container off, kills whatever is left in its cgroups and removes them;
the mounts lived only in systemd-nspawn's mount namespace and went with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

CGROUP_ROOTS = (Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified"))
PROPAGATE = Path("/run/systemd/nspawn/propagate")
INSIDE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BOOT_TIMEOUT_S = 60.0
POWEROFF_TIMEOUT_S = 30.0


class ContainerError(RuntimeError):
    """The container did not boot, or a command inside it failed."""


def _children(pid: int) -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses; split at the last ')'.
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == pid:
            found.append((int(entry.name), comm))
    return found


def _cgroup_pids(group: Path) -> list[int]:
    pids = []
    for procs in group.rglob("cgroup.procs"):
        try:
            pids += [int(line) for line in procs.read_text().split()]
        except OSError:
            continue
    return pids


def _remove_cgroup(group: Path) -> None:
    if not group.exists():
        return
    # Deepest first: a cgroup with children cannot be removed.
    for child in sorted((p for p in group.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        child.rmdir()
    group.rmdir()


class Container:
    """``start()`` boots and waits for systemd; ``run()`` executes inside; ``stop()`` always."""

    def __init__(
        self,
        rootfs: Path,
        name: str,
        *,
        binds: Mapping[Path, str] | None = None,
        log: Path,
    ) -> None:
        self.rootfs = rootfs
        self.name = name
        self.binds = dict(binds or {})
        self.log = log
        self.cgroups = [root / f"cooee-test-{name}" for root in CGROUP_ROOTS]
        self.process: subprocess.Popen[bytes] | None = None
        self.pid1 = 0

    # -- life --------------------------------------------------------------------------------

    def start(self) -> None:
        for group in self.cgroups:
            group.mkdir()
        command = [
            "systemd-nspawn",
            "--quiet",
            f"--directory={self.rootfs}",
            "--volatile=overlay",
            "--boot",
            "--register=no",
            "--keep-unit",
            # Its own network namespace, with one veth link: the agent's identity needs a MAC.
            # The host end (ve-NAME) goes away with the namespace.
            "--network-veth",
            f"--machine={self.name}",
            "--console=passive",
            # Without both, DevicePolicy/DeviceAllow/IPAddressDeny are silently not enforced.
            "--capability=CAP_BPF",
            "--system-call-filter=bpf",
            *(f"--bind-ro={host}:{inside}" for host, inside in self.binds.items()),
        ]
        env = {**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}
        procs = [str(group / "cgroup.procs") for group in self.cgroups]

        def into_own_cgroups() -> None:
            for path in procs:
                with open(path, "w") as f:
                    f.write(str(os.getpid()))

        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=into_own_cgroups,
            )
        self.pid1 = self._find_pid1()
        self._wait_booted()
        # A host's uplink: a default route over the veth (to nowhere: the host end stays down).
        for step in (
            ["ip", "link", "set", "host0", "up"],
            ["ip", "address", "add", "192.0.2.2/24", "dev", "host0"],
            ["ip", "route", "add", "default", "via", "192.0.2.1", "dev", "host0"],
        ):
            self.run(step)

    def _wait_booted(self) -> None:
        # Until PID 1 has its private socket up, systemctl fails at once ("Failed to connect").
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        state = ""
        while time.monotonic() < deadline:
            result = self.run(
                ["systemctl", "is-system-running", "--wait"],
                check=False,
                timeout=max(1.0, deadline - time.monotonic()),
            )
            state = result.stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.1)
        raise ContainerError(f"systemd in the container is {state!r}; see {self.log}")

    def _find_pid1(self) -> int:
        assert self.process is not None
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ContainerError(
                    f"systemd-nspawn exited {self.process.returncode}: "
                    + self.log.read_text(errors="replace")[-2000:]
                )
            for pid, comm in _children(self.process.pid):
                if comm == "systemd":
                    return pid
            time.sleep(0.05)
        raise ContainerError(f"no systemd under systemd-nspawn after {BOOT_TIMEOUT_S} s")

    def stop(self) -> list[str]:
        """Power off, then make sure: returns what had to be forced (empty when nothing)."""
        forced: list[str] = []
        if self.process is not None and self.process.poll() is None:
            if self.pid1:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid1, signal.SIGRTMIN + 4)  # systemd: poweroff
            try:
                self.process.wait(timeout=POWEROFF_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                forced.append("systemd-nspawn did not exit after poweroff")
                self.process.kill()
                self.process.wait(timeout=10)
        for group in self.cgroups:
            for _ in range(50):
                left = _cgroup_pids(group) if group.exists() else []
                if not left:
                    break
                forced.append(f"killed {len(left)} process(es) left in {group}")
                for pid in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.1)
            _remove_cgroup(group)
        # systemd-nspawn leaves its (empty) mount-propagation directory on the host's /run.
        propagate = PROPAGATE / self.name
        if propagate.is_dir() and not os.path.ismount(propagate):
            for leftover in propagate.iterdir():
                leftover.rmdir() if leftover.is_dir() else leftover.unlink()
            propagate.rmdir()
        return forced

    def __enter__(self) -> Container:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- inside ------------------------------------------------------------------------------

    def run(
        self,
        command: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 120.0,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``command`` inside every namespace of the container, as root, with a clean env."""
        inside_env = {"PATH": INSIDE_PATH, "LANG": "C.UTF-8", "TERM": "dumb", **(env or {})}
        result = subprocess.run(
            [
                "nsenter",
                f"--target={self.pid1}",
                "--mount",
                "--uts",
                "--ipc",
                "--net",
                "--pid",
                "--cgroup",
                "--",
                "env",
                "-i",
                *(f"{k}={v}" for k, v in inside_env.items()),
                *command,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise ContainerError(
                f"{' '.join(command)} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def sh(self, script: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return self.run(["sh", "-ec", script], **kwargs)  # type: ignore[arg-type]
