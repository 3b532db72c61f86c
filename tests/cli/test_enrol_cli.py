"""`cooee-agent enrol` as real processes: flags that write a config, refusals, and the wizard
answered on a pseudo-terminal, including Ctrl-C."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cooee_agent.config import load_config
from cooee_agent.protocol.keys import fingerprint, generate_leader_keys, load_agent_keys

CLI = Path(sys.executable).with_name("cooee-agent")
PEER = "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
PEER_2 = "/ip4/10.0.0.2/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
# Discovery must not find a real Ollama: port 9 (discard) is closed on loopback.
ENV = {
    **{k: v for k, v in os.environ.items() if k not in ("COOEE_CONFIG", "COOEE_STATE_DIR")},
    "OLLAMA_HOST": "127.0.0.1:9",
    "COLUMNS": "120",
}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, timeout=60, env=ENV
    )  # fmt: skip


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(generate_leader_keys(tmp_path_factory.mktemp("leader")).bundle.text)


def test_flags_write_a_config_that_loads_back_and_report_it_as_json(
    tmp_path: Path, bundle: str
) -> None:
    config, state, token = tmp_path / "etc" / "config.toml", tmp_path / "state", tmp_path / "tok"
    token.write_text("join-me-1234\n")
    token.chmod(0o600)
    result = run(
        "enrol", "--non-interactive", "--leader-key", bundle,
        "--bootstrap", PEER, "--bootstrap", PEER_2, "--mdns", "--join-token-file", str(token),
        "--interval", "12.5", "--config", str(config), "--state-dir", str(state), "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["config"] == str(config) and report["replaced"] is False
    assert report["leader_fingerprint"] == fingerprint(bundle)
    assert report["agent_id"] == load_agent_keys(state).agent_id and report["keys_created"]

    loaded = load_config(config, env={})
    assert loaded.leader.keys == (bundle,)
    assert loaded.mesh.bootstrap == (PEER, PEER_2) and loaded.mesh.mdns is True
    assert loaded.join_token == "join-me-1234"
    assert loaded.heartbeat.interval == 12.5
    assert loaded.state_dir == state
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    # Who may read it is said either way: chgrp'd to the agent's group, or why not.
    assert "cooee-agent" in result.stderr
    if os.geteuid() != 0:
        assert "not running as root" in result.stderr


def test_an_existing_config_needs_force(tmp_path: Path, bundle: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text('log_level = "debug"\n')
    args = ["enrol", "--non-interactive", "--leader-key", bundle, "--bootstrap", PEER]
    args += ["--config", str(config), "--state-dir", str(tmp_path / "state")]
    refused = run(*args)
    assert refused.returncode == 2 and "--force" in refused.stderr
    assert config.read_text() == 'log_level = "debug"\n'

    forced = run(*args, "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["replaced"] is True
    assert load_config(config, env={}).mesh.bootstrap == (PEER,)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--bootstrap", "/ip4/10.0.0.1/tcp/4001"], "must end in /p2p/<peer id>"),
        ([], "at least one --bootstrap peer, or --mdns"),
        (["--mdns", "--interval", "9999"], "1 to 3600 seconds"),
        (["--mdns", "--join-token-file", "/nonexistent/token"], "cannot read the join token"),
        (["--mdns", "--join-token", "t"], "use --join-token-file"),
        (["--mdns", "--dry-run"], "--mdns writes a configuration"),
        (["--mdns", "--ollama-host", "ftp://x"], "ollama.host"),
    ],
)
def test_invalid_flags_exit_2_with_the_reason_and_write_nothing(
    tmp_path: Path, bundle: str, extra: list[str], message: str
) -> None:
    config = tmp_path / "etc" / "config.toml"
    result = run(
        "enrol", "--non-interactive", "--leader-key", bundle, *extra,
        "--config", str(config), "--state-dir", str(tmp_path / "state"),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_a_bad_bundle_or_none_exits_2(tmp_path: Path) -> None:
    config = str(tmp_path / "config.toml")
    bad = run("enrol", "--non-interactive", "--leader-key", "cooee-leader-v1.x", "--mdns",
              "--config", config)  # fmt: skip
    assert bad.returncode == 2 and "age recipient" in bad.stderr
    missing = run("enrol", "--non-interactive", "--mdns", "--config", config)
    assert missing.returncode == 2 and "--leader-key is required" in missing.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_wizard_without_a_terminal_points_at_non_interactive(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(CLI), "enrol", "--config", str(tmp_path / "c.toml")],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, env=ENV,
    )  # fmt: skip
    assert result.returncode == 2 and "--non-interactive" in result.stderr


class Terminal:
    """``cooee-agent`` on a pseudo-terminal it controls, answered the way a person would."""

    def __init__(self, *args: str) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: exec at once, nothing else
            # A runner started in the background may hand down SIGINT ignored, and Python
            # then never raises KeyboardInterrupt: give the child a person's terminal.
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.execve(str(CLI), [str(CLI), *args], ENV)
        self.seen = ""  # since the last answer
        self.transcript = ""  # everything

    def expect(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise AssertionError(f"no {text!r} within {timeout} s; got:\n{self.seen}")
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                raise AssertionError(f"the process ended before {text!r}; got:\n{self.seen}")
            self._add(chunk)

    def _add(self, chunk: bytes) -> None:
        text = chunk.decode("utf-8", "replace")
        self.seen += text
        self.transcript += text

    def answer(self, prompt: str, reply: str) -> None:
        self.expect(prompt)
        self.seen = self.seen[self.seen.index(prompt) + len(prompt) :]
        os.write(self.fd, reply.encode() + b"\n")

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with_status = os.waitpid(self.pid, os.WNOHANG)
            if with_status[0]:
                return os.waitstatus_to_exitcode(with_status[1])
            try:
                if select.select([self.fd], [], [], 0.1)[0]:
                    self._add(os.read(self.fd, 4096))
            except OSError:
                time.sleep(0.05)
        doing = _what_it_is_doing(self.pid)
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError(f"still running after {timeout} s ({doing}):\n{self.seen}")

    def close(self) -> None:
        os.close(self.fd)


def _what_it_is_doing(pid: int) -> str:
    """Each thread's name, state and kernel wait channel, from /proc: where a hang sits."""
    threads = []
    for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
        try:
            name = (task / "comm").read_text().strip()
            state = next(
                line.split(":", 1)[1].strip()
                for line in (task / "status").read_text().splitlines()
                if line.startswith("State:")
            )
            wchan = (task / "wchan").read_text().strip() or "-"
        except (OSError, StopIteration):
            continue
        threads.append(f"{name} {state} in {wchan}")
    return "; ".join(threads) or "no /proc entry"


def test_the_wizard_on_a_terminal_shows_discovery_and_writes_the_config(
    tmp_path: Path, bundle: str
) -> None:
    config, state = tmp_path / "etc" / "config.toml", tmp_path / "state"
    term = Terminal("enrol", "--config", str(config), "--state-dir", str(state))
    try:
        term.expect("GPUs")  # the discover tables come first
        term.answer("Leader key bundle (or @FILE holding it): ", bundle)
        term.expect(fingerprint(bundle))
        term.answer("[y/N] ", "y")
        term.answer("Bootstrap peer 1: ", "/ip4/10.0.0.1/tcp/4001")
        term.expect("must end in /p2p/<peer id>")
        term.answer("Bootstrap peer 1: ", PEER)
        term.answer("Bootstrap peer 2: ", "")
        term.answer("[y/N] ", "")
        term.answer("empty for none): ", "hidden-token")
        term.answer("[30]: ", "")
        term.expect("+ [leader]")
        term.answer("Write it? [Y/n] ", "y")
        term.answer("Show the command that starts the agent? [Y/n] ", "y")
        assert term.wait() == 0, term.seen
    finally:
        term.close()
    assert "systemctl enable --now cooee-agent" in term.transcript
    assert "hidden-token" not in term.transcript  # not echoed, not summarised
    loaded = load_config(config, env={})
    assert loaded.join_token == "hidden-token" and loaded.mesh.bootstrap == (PEER,)
    assert loaded.leader.keys == (bundle,) and loaded.heartbeat.interval == 30.0
    assert load_agent_keys(state).agent_id in term.transcript


def test_ctrl_c_in_the_wizard_exits_130_and_writes_nothing(tmp_path: Path, bundle: str) -> None:
    config, state = tmp_path / "etc" / "config.toml", tmp_path / "state"
    term = Terminal("enrol", "--config", str(config), "--state-dir", str(state))
    try:
        term.answer("Leader key bundle (or @FILE holding it): ", bundle)
        term.answer("[y/N] ", "y")
        term.expect("Bootstrap peer 1: ")
        os.write(term.fd, b"\x03")
        assert term.wait() == 130
    finally:
        term.close()
    assert "interrupted; nothing was written" in term.transcript
    assert list(tmp_path.iterdir()) == []
