"""Every refusal of the command line is one line on stderr with the documented exit code, whatever
was typed or named: usage errors, FIFOs and devices given as files, hostile configuration, long
or control-laden input echoed back. Real ``cooee-agent`` processes throughout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from process_support import ENTRY, cli

from cooee_agent.protocol.keys import generate_leader_keys

PEER = "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"


def one_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (("leader", "list", "--bogus"), "cooee-agent leader list: error: No such option: --bogus"),
        (("nosuch",), "cooee-agent: error: No such command 'nosuch'"),
        (("leader", "approve"), "cooee-agent leader approve: error: Missing argument 'host'"),
        (("enrol", "--interval"), "cooee-agent: error: Option '--interval' requires an argument"),
        (
            ("resolve", "458RV", "--no-agent"),
            "cooee-agent resolve: error: Invalid value for --no-agent: --no-agent applies only "
            "with --mesh",
        ),
    ],
)
def test_a_usage_error_is_one_line_with_where_to_look(args: tuple[str, ...], start: str) -> None:
    line = one_line(cli(*args), 2)
    assert line.startswith(start), line
    assert line.endswith("--help')")


def test_a_bare_group_still_shows_its_help() -> None:
    result = cli("leader")
    assert result.returncode == 2
    assert "Commands" in result.stdout + result.stderr


def test_a_100_kb_input_is_not_echoed_whole() -> None:
    line = one_line(cli("token", "decode", "A" * 100_000), 2)
    assert len(line) < 1200
    assert "(100000 characters)" in line  # the codec names the length instead of the input


def test_control_characters_in_an_error_never_reach_the_terminal(tmp_path: Path) -> None:
    line = one_line(cli("resolve", "4\x1b[2J\x07", "--state-dir", str(tmp_path)), 2)
    assert "\x1b" not in line and "\x07" not in line


@pytest.mark.parametrize("kind", ["fifo", "device", "directory", "huge"])
def test_a_config_that_is_not_a_small_regular_file_is_refused_at_once(
    tmp_path: Path, kind: str
) -> None:
    path = _special(tmp_path, kind)
    line = one_line(cli("run", "--config", str(path)), 2)
    assert "cannot read configuration" in line and str(path) in line


@pytest.mark.parametrize("kind", ["fifo", "device", "huge"])
def test_a_bundle_or_token_file_that_is_not_a_small_regular_file_is_refused(
    tmp_path: Path, kind: str
) -> None:
    path = _special(tmp_path, kind)
    line = one_line(
        cli("enrol", "--non-interactive", "--leader-key", f"@{path}", "--bootstrap", PEER,
            "--config", str(tmp_path / "c.toml"), "--state-dir", str(tmp_path / "s")),
        2,
    )  # fmt: skip
    assert f"cannot read the Leader key bundle: bundle file {path}" in line
    bundle = generate_leader_keys(tmp_path / "leader").bundle.text
    line = one_line(
        cli("enrol", "--non-interactive", "--leader-key", bundle, "--bootstrap", PEER,
            "--join-token-file", str(path), "--config", str(tmp_path / "c.toml"),
            "--state-dir", str(tmp_path / "s")),
        2,
    )  # fmt: skip
    assert f"cannot read the join token: join token file {path}" in line


def _special(tmp_path: Path, kind: str) -> Path:
    if kind == "fifo":
        os.mkfifo(tmp_path / "fifo")
        return tmp_path / "fifo"
    if kind == "device":
        return Path("/dev/zero")
    if kind == "directory":
        (tmp_path / "dir").mkdir()
        return tmp_path / "dir"
    with (tmp_path / "huge").open("wb") as handle:
        handle.truncate(2 * 1024**3)  # sparse
    return tmp_path / "huge"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[ollama]\nhost = "http://[::1"\n', "ollama.host: is not a URL"),
        ("a = " + "[" * 100_000 + "]" * 100_000 + "\n", "invalid TOML: nested too deeply"),
    ],
    ids=["unclosed-ipv6", "deep-nesting"],
)
def test_hostile_configuration_is_one_line(tmp_path: Path, text: str, words: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text)
    assert words in one_line(cli("run", "--config", str(config)), 2)


def test_intervene_refuses_control_characters_and_a_mistyped_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    line = one_line(cli("intervene", "--reason", "fan\x1b[31m", "--state-dir", str(state)), 2)
    assert "--reason holds a control character" in line and "\x1b" not in line
    typo = tmp_path / "stat"
    line = one_line(cli("intervene", "--reason", "fan", "--state-dir", str(typo)), 2)
    assert f"{typo} does not exist" in line
    assert not typo.exists()  # no second identity made there


def test_enrol_out_into_a_directory_or_a_missing_one_is_refused_first(tmp_path: Path) -> None:
    bundle = generate_leader_keys(tmp_path / "leader").bundle.text
    state = tmp_path / "state"
    for out, words in (
        (tmp_path, "is a directory"),
        (tmp_path / "missing" / "x.json", "does not exist"),
    ):
        line = one_line(
            cli("enrol", "--non-interactive", "--dry-run", "--leader-key", bundle,
                "--out", str(out), "--state-dir", str(state)),
            2,
        )  # fmt: skip
        assert f"--out {out}" in line and words in line
    assert not state.exists()  # refused before any key was made


@pytest.mark.slow
def test_dev_on_sigterm_stops_and_removes_its_keys(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path), "OLLAMA_HOST": "127.0.0.1:9"}
    process = subprocess.Popen(
        [sys.executable, "-c", ENTRY, "dev", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())
        assert first["event"] == "leader"
        assert list(tmp_path.glob("cooee-dev-*"))
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert code == 0
    deadline = time.monotonic() + 5
    while list(tmp_path.glob("cooee-dev-*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not list(tmp_path.glob("cooee-dev-*"))
