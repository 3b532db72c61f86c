"""End-to-end harness: ``leader serve`` and ``cooee-agent run`` as real processes on 127.0.0.1.

Every process runs in its own session (process group), so a finalizer can kill it and anything
it started. Several agents on one machine would share hostname and MAC, and the Leader keys a
host by (hostname, MAC); each agent process therefore starts with ``socket.gethostname``
replaced by a name of its own, the only line of its entry point that differs from the
installed ``cooee-agent`` script. Everything else (discovery, keys, outbox, mesh) is the product.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from process_support import DEADLINE, ENTRY, cli, free_port, until


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **extra}
    # Whatever systemd or journald context the test runner has must not reach the children.
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"):
        env.pop(name, None)
    return env


class Process:
    """One child in a session of its own; its stderr goes to ``log``."""

    def __init__(self, name: str, argv: Sequence[str], log: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log = log
        with log.open("a") as sink:
            self.proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=sink,
                env=_clean_env(env),
                start_new_session=True,
            )

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int, timeout: float = 30.0) -> int:
        """Send ``signum`` to the whole group and wait for the child; returns its exit status."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signum)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.alive:
            self.signal(signal.SIGKILL)
        else:  # the child is gone; a grandchild may not be
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Agent:
    """One agent: its own state directory, config, hostname and (once started) process."""

    def __init__(
        self,
        world: World,
        name: str,
        bootstrap: Sequence[str],
        *,
        interval: int = 1,
        log_level: str = "debug",
    ) -> None:
        self.world = world
        self.interval = interval
        self.log_level = log_level
        self.name = name
        self.hostname = f"{name}.e2e.test"
        self.state_dir = world.tmp / name
        self.config = world.tmp / f"{name}.toml"
        self.log = world.tmp / f"{name}.stderr"
        self.process: Process | None = None
        self.bootstrap = tuple(bootstrap)
        self.listen = "/ip4/127.0.0.1/tcp/0"
        self.write_config()

    def write_config(self) -> None:
        addrs = ", ".join(f'"{a}"' for a in self.bootstrap)
        self.config.write_text(
            f'state_dir = "{self.state_dir}"\n'
            f'log_level = "{self.log_level}"\n'
            f'[leader]\nkeys = ["{self.world.bundle}"]\n'
            f'[mesh]\nlisten = "{self.listen}"\nbootstrap = [{addrs}]\n'
            f"[heartbeat]\ninterval = {self.interval}\njitter = 0\n"
            # Nothing listens there: the agent runs with no Ollama and no models.
            f'[ollama]\nhost = "http://127.0.0.1:{self.world.closed_port}"\n'
        )

    def known_addr(self) -> str:
        """Fix this agent's port and peer key now, so others can dial it before it starts."""
        from libp2p.peer.id import ID

        from cooee_agent.bus.peerkey import load_or_create_peer_key

        port = free_port()
        self.listen = f"/ip4/127.0.0.1/tcp/{port}"
        self.write_config()
        key_pair = load_or_create_peer_key(self.state_dir)
        return f"{self.listen}/p2p/{ID.from_pubkey(key_pair.public_key).to_base58()}"

    def start(self, *extra: str) -> Agent:
        """``extra``: more arguments of ``run`` (``--metrics ADDR``)."""
        entry = f"import socket; socket.gethostname = lambda: {self.hostname!r}; {ENTRY}"
        argv = [sys.executable, "-c", entry, "run", "--config", str(self.config), *extra]
        env = {"OLLAMA_MODELS": str(self.world.tmp / "no-models")}
        self.process = self.world.spawn(self.name, argv, self.log, env)
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.signal(signal.SIGKILL)

    def status(self) -> dict[str, Any]:
        """``cooee-agent status --json`` for this agent's state directory."""
        result = cli("status", "--json", "--state-dir", str(self.state_dir))
        return dict(json.loads(result.stdout)) if result.stdout.strip() else {}

    def enrolled(self, timeout: float = DEADLINE) -> dict[str, Any]:
        """Wait until ``status`` says enrolled; returns that status."""
        return until(
            lambda: (s := self.status()).get("enrolment") == "enrolled" and s,
            f"{self.name} enrolled (log: {self.log})",
            timeout,
        )


class World:
    """A Leader's state directory and every process a test starts, all killed at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.leader_dir = tmp / "leader"
        self.leader_port = free_port()
        self.closed_port = free_port()
        self.processes: list[Process] = []
        self.leader: Process | None = None
        self.leader_addr = ""
        keygen = cli("leader", "keygen", "--state-dir", str(self.leader_dir), "--json")
        assert keygen.returncode == 0, keygen.stderr
        self.bundle = str(json.loads(keygen.stdout)["bundle"])

    @property
    def leader_identity(self) -> Path:
        from cooee_agent.protocol.keys import LEADER_IDENTITY_FILE

        return self.leader_dir / LEADER_IDENTITY_FILE

    def spawn(self, name: str, argv: Sequence[str], log: Path, env: dict[str, str]) -> Process:
        process = Process(name, argv, log, env)
        self.processes.append(process)
        return process

    def start_leader(
        self, bootstrap: Sequence[str] = (), *, debug: bool = False, extra: Sequence[str] = ()
    ) -> str:
        """``leader serve`` on the world's fixed port; returns its /p2p/ multiaddr. ``debug``
        logs what the mesh drops (and much else) to leader.stderr; ``extra``: more arguments
        of ``serve`` (``--http ADDR``, ``--offline-after S``)."""
        addrs_file = self.leader_dir / "leader.addrs"
        addrs_file.unlink(missing_ok=True)  # a killed Leader leaves its old file behind
        listen = f"/ip4/127.0.0.1/tcp/{self.leader_port}"
        argv = [sys.executable, "-c", ENTRY, *(["--debug"] if debug else []), "leader", "serve"]
        argv += ["--state-dir", str(self.leader_dir), "--listen", listen]
        for addr in bootstrap:
            argv += ["--bootstrap", addr]
        argv += list(extra)
        self.leader = self.spawn("leader", argv, self.tmp / "leader.stderr", {})
        leader = self.leader

        def addrs() -> list[str] | None:
            assert leader.alive, f"leader serve exited early:\n{leader.tail()}"
            return addrs_file.read_text().split() if addrs_file.exists() else None

        self.leader_addr = until(addrs, "leader.addrs")[0]
        return self.leader_addr

    def future_leader_addr(self) -> str:
        """The multiaddr ``start_leader`` will serve on, known before it starts (the peer key
        is made now, in the Leader's state directory, where ``leader serve`` will find it)."""
        from libp2p.peer.id import ID

        from cooee_agent.bus.peerkey import load_or_create_peer_key

        key_pair = load_or_create_peer_key(self.leader_dir)
        peer_id = ID.from_pubkey(key_pair.public_key).to_base58()
        return f"/ip4/127.0.0.1/tcp/{self.leader_port}/p2p/{peer_id}"

    def stop_leader(self, signum: int) -> None:
        assert self.leader is not None
        self.leader.signal(signum)

    def agent(self, name: str, bootstrap: Sequence[str] | None = None, **options: Any) -> Agent:
        """A configured agent (not started); by default it bootstraps to the Leader only.
        ``options``: ``interval`` (heartbeat seconds) and ``log_level``."""
        return Agent(self, name, [self.leader_addr] if bootstrap is None else bootstrap, **options)

    def hosts(self) -> list[dict[str, Any]]:
        """``leader list --json`` (an empty list before the registry exists)."""
        from cooee_agent.leader.registry import REGISTRY_FILE

        if not (self.leader_dir / REGISTRY_FILE).exists():
            return []
        listed = cli("leader", "list", "--json", "--state-dir", str(self.leader_dir))
        assert listed.returncode == 0, listed.stderr
        return list(json.loads(listed.stdout))

    def online(self, hostnames: Sequence[str], timeout: float = DEADLINE) -> list[dict[str, Any]]:
        """Wait until every one of ``hostnames`` is listed online; returns the whole list."""

        def all_online() -> list[dict[str, Any]] | None:
            hosts = self.hosts()
            up = {h["hostname"] for h in hosts if h["online"]}
            return hosts if set(hostnames) <= up else None

        return until(all_online, f"{sorted(hostnames)} online at the Leader", timeout)

    def close(self) -> None:
        for process in reversed(self.processes):
            with contextlib.suppress(Exception):
                process.kill()
