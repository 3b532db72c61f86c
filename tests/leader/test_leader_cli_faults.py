"""Every Leader verb meets a broken registry, a hostile file or a strange argument with one line
on stderr naming the file and the repair, never a traceback; a batch carries on past a bad file.
Real processes, real SQLite files, a real FIFO and /dev/zero."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from enrolment_factory import agent_keys, record
from process_support import ENTRY, cli

from cooee_agent.leader.calls import CALLS_FILE
from cooee_agent.leader.registry import REGISTRY_FILE
from cooee_agent.protocol.keys import load_leader_keys
from cooee_agent.protocol.sealing import seal_enrolment


def one_line_error(result: object, code: int) -> str:
    """The single stderr line of a failed run, after checking its exit code."""
    assert result.returncode == code, (result.returncode, result.stderr)  # type: ignore[attr-defined]
    lines = result.stderr.splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1, result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in lines[0]
    return str(lines[0])


def envelope(leader_dir: Path, host: int) -> bytes:
    keys = agent_keys()
    bundle = load_leader_keys(leader_dir).bundle
    now = datetime.now(UTC)
    return seal_enrolment(record(keys, host=host, issued_at=now), keys, bundle, sent_at=now)


VERBS = [
    ("leader", "list"),
    ("leader", "ingest", "/dev/null"),
    ("leader", "approve", "1"),
    ("leader", "revoke", "1"),
    ("leader", "serve", "--listen", "/ip4/127.0.0.1/tcp/0"),
    ("resolve", "40414"),
]


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: "-".join(v[:2]))
def test_a_registry_that_is_not_a_database_is_one_line_naming_the_file_and_the_repair(
    leader_dir: Path, verb: tuple[str, ...]
) -> None:
    registry = leader_dir / REGISTRY_FILE
    registry.write_bytes(b"this is not a database\n" * 100)
    line = one_line_error(cli(*verb, "--state-dir", str(leader_dir)), 1)
    assert str(registry) in line and "not a readable SQLite database" in line
    assert f"mv {registry} {registry}.corrupt" in line
    assert registry.read_bytes().startswith(b"this is not a database")  # never dropped


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: "-".join(v[:2]))
def test_a_directory_in_place_of_the_registry_is_one_line(
    leader_dir: Path, verb: tuple[str, ...]
) -> None:
    (leader_dir / REGISTRY_FILE).mkdir()
    line = one_line_error(cli(*verb, "--state-dir", str(leader_dir)), 1)
    assert f"{leader_dir / REGISTRY_FILE} is a directory" in line


def test_a_corrupt_calls_file_is_one_line_for_calls_and_close(leader_dir: Path) -> None:
    calls = leader_dir / CALLS_FILE
    calls.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    for verb in (("leader", "calls"), ("leader", "calls", "close", "1")):
        line = one_line_error(cli(*verb, "--state-dir", str(leader_dir)), 1)
        assert str(calls) in line


def test_a_registry_whose_writes_fail_names_the_file(leader_dir: Path) -> None:
    # A file-size limit makes every write past it fail in SQLite, as a full disk does.
    assert cli("leader", "ingest", "--state-dir", str(leader_dir), "/dev/null").returncode == 1
    good = leader_dir / "good.json"
    good.write_bytes(envelope(leader_dir, 1))

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        # The write-ahead log starts empty: its first page frame already crosses this.
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    result = subprocess.run(
        [sys.executable, "-c", ENTRY, "leader", "ingest", "--state-dir", str(leader_dir),
         str(good)],
        capture_output=True, text=True, timeout=60, preexec_fn=limited,
    )  # fmt: skip
    line = one_line_error(result, 1)
    assert str(leader_dir / REGISTRY_FILE) in line and "cannot be written" in line


def test_a_held_write_lock_is_one_line_saying_who_to_stop(leader_dir: Path) -> None:
    from cooee_agent.leader.database_faults import DatabaseFault
    from cooee_agent.leader.registry import Registry

    Registry(leader_dir / REGISTRY_FILE).close()
    holder = sqlite3.connect(leader_dir / REGISTRY_FILE, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(DatabaseFault, match="locked by another process") as caught:
            Registry(leader_dir / REGISTRY_FILE, busy_timeout_s=0.05)
        assert str(leader_dir / REGISTRY_FILE) in str(caught.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_batch_carries_on_past_bad_files_and_reports_each(leader_dir: Path) -> None:
    first, last = leader_dir / "a.json", leader_dir / "z.json"
    first.write_bytes(envelope(leader_dir, 1))
    last.write_bytes(envelope(leader_dir, 2))
    fifo = leader_dir / "pipe"
    os.mkfifo(fifo)
    big = leader_dir / "big.json"
    with big.open("wb") as handle:
        handle.truncate(2 * 1024 * 1024 * 1024)  # sparse: 2 GB that costs no disk
    garbage = leader_dir / "bad.json"
    garbage.write_bytes(b'{"body": ' + b"[" * 100_000)
    digits = leader_dir / "digits.json"  # past Python's 4,300-digit limit for int()
    digits.write_bytes(b'{"v": 1, "n": ' + b"9" * 5000 + b"}")
    files = [first, fifo, big, Path("/dev/zero"), garbage, digits, leader_dir / "missing", last]
    result = cli("leader", "ingest", "--state-dir", str(leader_dir), *map(str, files))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{first}: accepted" in result.stdout and f"{last}: accepted" in result.stdout
    assert f"{fifo}: refused: unreadable: envelope file {fifo} is a FIFO" in result.stderr
    assert f"{big}: refused: unreadable: envelope file {big} is over the 65536-byte" in (
        result.stderr
    )
    assert "/dev/zero: refused: unreadable: envelope file /dev/zero is a device" in result.stderr
    assert f"{garbage}: refused:" in result.stderr
    assert f"{digits}: refused: schema:" in result.stderr
    assert f"{leader_dir / 'missing'}: refused: unreadable:" in result.stderr
    assert result.stderr.splitlines()[-1] == "cooee-agent: error: 6 of 8 envelope(s) refused"


def test_assignments_naming_a_file_is_refused_before_anything_is_committed(
    leader_dir: Path,
) -> None:
    source = leader_dir / "a.json"
    source.write_bytes(envelope(leader_dir, 1))
    taken = leader_dir / "taken"
    taken.write_text("mine\n")
    command = ("leader", "ingest", "--state-dir", str(leader_dir), str(source))
    line = one_line_error(cli(*command, "--assignments", str(taken)), 2)
    assert f"--assignments {taken} exists and is not a directory" in line
    assert not (leader_dir / REGISTRY_FILE).exists()  # nothing committed: it can be redone
    out = leader_dir / "out"
    assert cli(*command, "--assignments", str(out)).returncode == 0
    assert (out / "a.json.assignment").stat().st_size > 0


@pytest.mark.parametrize("selector", ["²", "\u0661", "123456789012345678901234567"])
def test_approve_and_revoke_take_any_selector_without_a_traceback(
    leader_dir: Path, selector: str
) -> None:
    source = leader_dir / "a.json"
    source.write_bytes(envelope(leader_dir, 1))
    assert cli("leader", "ingest", "--state-dir", str(leader_dir), str(source)).returncode == 0
    for verb in ("approve", "revoke"):
        line = one_line_error(cli("leader", verb, selector, "--state-dir", str(leader_dir)), 1)
        assert "no host matches" in line


def test_calls_close_with_an_id_past_sqlite_integers_is_a_usage_error(leader_dir: Path) -> None:
    line = one_line_error(
        cli("leader", "calls", "close", "12345678901234567890123", "--state-dir", str(leader_dir)),
        2,
    )
    assert line.startswith("cooee-agent leader calls close: error: ")


def test_keygen_into_a_file_is_one_line(tmp_path: Path) -> None:
    taken = tmp_path / "afile"
    taken.write_text("")
    line = one_line_error(cli("leader", "keygen", "--state-dir", str(taken)), 2)
    assert f"{taken} is a file, not a directory" in line
