"""``cooee-agent submit pr|dr`` and ``submissions`` as processes, without a running agent: what is
queued, and what is refused before anything is queued (each with a line naming why)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cooee_agent.agent.submitting import KEY_PREFIX
from cooee_agent.bus.outbox import Outbox
from cooee_agent.protocol.keys import generate_leader_keys

ENTRY = "from cooee_agent.cli import main; main()"
ADDRESS = "ucxl://any:admin@SLURP:context/#/docs/x.md"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", ENTRY, *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    bundle = generate_leader_keys(tmp_path / "leader").bundle.text
    path = tmp_path / "agent.toml"
    path.write_text(f'state_dir = "{tmp_path / "state"}"\n[leader]\nkeys = ["{bundle}"]\n')
    return path


def write(tmp_path: Path, name: str, data: bytes) -> str:
    (tmp_path / name).write_bytes(data)
    return str(tmp_path / name)


def test_a_pr_and_a_dr_are_queued_and_listed(config: Path, tmp_path: Path) -> None:
    pr = cli("submit", "pr", "--config", str(config), "--title", "T", "--address", ADDRESS,
             "--document", write(tmp_path, "doc.md", b"# New\n"), "--json")  # fmt: skip
    assert pr.returncode == 0, pr.stderr
    dr = cli("submit", "dr", "--config", str(config), "--title", "D", "--status", "accepted",
             "--context-file", write(tmp_path, "c.md", b"ctx\n"),
             "--decision-file", write(tmp_path, "d.md", b"dec\n"))  # fmt: skip
    assert dr.returncode == 0 and "queued dr" in dr.stdout, dr.stderr
    assert "no agent is running" in dr.stdout
    listed = json.loads(cli("submissions", "--json", "--config", str(config)).stdout)
    assert [(e["kind"], e["state"]) for e in listed] == [("pr", "queued"), ("dr", "queued")]
    with Outbox.open_in(tmp_path / "state") as outbox:
        keys = {item.key for item in outbox.items()}
    assert keys == {KEY_PREFIX + e["id"] for e in listed}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--diff", "big"], "over 65536 bytes"),
        (["--diff", "sealed-big"], "over the 65536-byte limit"),
        (["--diff", "small", "--document", "small"], "exactly one of --diff"),
        (["--address", "ucxl://nope", "--diff", "small"], "address"),
        (["--diff", "missing"], "--diff"),
        (["--diff", "small", "--description-file", "binary"], "not UTF-8"),
    ],
)
def test_a_pr_that_cannot_be_sent_is_refused_before_queueing(
    config: Path, tmp_path: Path, argv: list[str], message: str
) -> None:
    files = {
        "big": write(tmp_path, "big", b"x" * (64 * 1024 + 1)),
        "sealed-big": write(tmp_path, "sealed-big", b"x" * 45_000),
        "small": write(tmp_path, "small", b"-a\n+b\n"),
        "binary": write(tmp_path, "binary", b"\xff\xfe"),
        "missing": str(tmp_path / "missing"),
    }
    args = [files.get(a, a) for a in argv]
    if "--address" not in args:
        args = ["--address", ADDRESS, *args]
    result = cli("submit", "pr", "--config", str(config), "--title", "T", *args)
    assert result.returncode == 2, result.stdout  # InputError: a usage error
    assert result.stderr.startswith("cooee-agent: error:") and message in result.stderr
    assert json.loads(cli("submissions", "--json", "--config", str(config)).stdout) == []


def test_a_dr_with_a_bad_status_is_refused(config: Path, tmp_path: Path) -> None:
    ctx = write(tmp_path, "c.md", b"c")
    result = cli("submit", "dr", "--config", str(config), "--title", "D", "--status", "maybe",
                 "--context-file", ctx, "--decision-file", ctx)  # fmt: skip
    assert result.returncode == 2 and "--status must be one of" in result.stderr
