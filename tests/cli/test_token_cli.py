"""`cooee-agent token`: the installed console script, its output, exit codes and start-up cost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = Path(sys.executable).with_name("cooee-agent")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, timeout=30, env={**os.environ}
    )


def test_decode_prints_version_host_and_slot() -> None:
    result = run("token", "decode", "458RV")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "458RV  version=1 host_id=42 gpu_slot=3 reserved=0"


def test_decode_json_lists_every_token_and_accepts_aliases() -> None:
    result = run("token", "decode", "--json", "4OO1Y", "4001y")
    assert result.returncode == 0, result.stderr
    decoded = json.loads(result.stdout)
    assert [entry["token"] for entry in decoded] == ["4001Y", "4001Y"]
    assert decoded[0]["host_id"] == 0 and decoded[0]["version"] == 1


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("4541\u017f", "non-ASCII"),
        ("458R", "4 characters"),
        ("458RU", "'U' at position 5"),
        ("ZZZZZ", "checksum"),
    ],
)
def test_bad_tokens_exit_2_with_one_line_naming_the_fault(text: str, fault: str) -> None:
    result = run("token", "decode", text)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fault in lines[0]


def test_decode_reports_each_bad_token_and_still_prints_the_good_ones() -> None:
    result = run("token", "decode", "458RV", "458R", "ZZZZZ")
    assert result.returncode == 2
    assert "host_id=42" in result.stdout
    assert "4 characters" in result.stderr and "checksum" in result.stderr


def test_encode_prints_the_token() -> None:
    result = run("token", "encode", "--host-id", "42", "--gpu-slot", "3")
    assert (result.returncode, result.stdout.strip()) == (0, "458RV")


def test_encode_host_id_out_of_range_exits_2() -> None:
    result = run("token", "encode", "--host-id", "1024", "--gpu-slot", "0")
    assert result.returncode == 2
    assert "host_id 1024 is out of range" in result.stderr


def test_encode_non_integer_is_a_usage_error() -> None:
    result = run("token", "encode", "--host-id", "x", "--gpu-slot", "0")
    assert result.returncode == 2


def test_version_and_help() -> None:
    assert run("--version").stdout.startswith("cooee-agent ")
    for verb in ([], ["token"], ["token", "encode"], ["token", "decode"]):
        result = run(*verb, "--help")
        assert result.returncode == 0 and "Usage" in result.stdout


def test_token_verbs_do_not_import_heavy_libraries() -> None:
    probe = (
        "import sys\n"
        "from cooee_agent.cli import app\n"
        "try:\n"
        "    app(['token', 'decode', '458RV'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('libp2p', 'pynvml', 'pyudev', 'trio', 'pyrage', 'systemd') "
        "if m in sys.modules]\n"
        "print('heavy=' + ','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "heavy="
