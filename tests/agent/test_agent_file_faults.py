"""The agent's own files when they are broken: a corrupt outbox is set aside with an ERROR line
(never dropped, never a restart loop), an outbox that is a directory and a status.json of the
wrong shape are one line each. Real SQLite files and real ``cooee-agent`` processes."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from process_support import ENTRY, cli

from cooee_agent.agent.state import write_json
from cooee_agent.bus.outbox import OUTBOX_FILE, Outbox
from cooee_agent.bus.outbox_recovery import open_outbox
from cooee_agent.errors import TransportError
from cooee_agent.protocol.kinds import TOPIC_ENROL

GARBAGE = b"this was an outbox once\n" * 200


def test_a_corrupt_outbox_is_moved_aside_with_an_error_line_and_a_fresh_one_opened(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / OUTBOX_FILE).write_bytes(GARBAGE)
    (tmp_path / f"{OUTBOX_FILE}-wal").write_bytes(b"stale log")
    with caplog.at_level(logging.ERROR), open_outbox(tmp_path) as outbox:
        outbox.put("k", TOPIC_ENROL, b"x")
        assert outbox.depth() == 1
    [aside] = tmp_path.glob(f"{OUTBOX_FILE}.corrupt-*[0-9TZ]")
    assert aside.read_bytes() == GARBAGE  # kept for a post-mortem, never deleted
    assert (aside.with_name(aside.name + "-wal")).read_bytes() == b"stale log"
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert f"outbox {tmp_path / OUTBOX_FILE} is corrupt" in line and str(aside) in line


def test_an_outbox_that_is_locked_or_a_directory_is_not_set_aside(tmp_path: Path) -> None:
    (tmp_path / OUTBOX_FILE).mkdir()
    with pytest.raises(TransportError, match=r"cannot open outbox .*: Is a directory"):
        open_outbox(tmp_path)
    assert (tmp_path / OUTBOX_FILE).is_dir()
    assert not list(tmp_path.glob("*.corrupt-*"))


def _run_config(tmp_path: Path) -> Path:
    from cooee_agent.protocol.keys import generate_leader_keys

    bundle = generate_leader_keys(tmp_path / "leader").bundle.text
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    config = tmp_path / "config.toml"
    config.write_text(
        f'state_dir = "{state}"\n'
        f'[leader]\nkeys = ["{bundle}"]\n'
        '[mesh]\nlisten = "/ip4/127.0.0.1/tcp/0"\n'
        'bootstrap = ["/ip4/127.0.0.1/tcp/9/p2p/'
        '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"]\n'
        '[ollama]\nhost = "http://127.0.0.1:9"\n'
    )
    return config


@pytest.mark.slow
def test_run_with_a_corrupt_outbox_starts_and_says_where_the_file_went(tmp_path: Path) -> None:
    config = _run_config(tmp_path)
    state = tmp_path / "state"
    (state / OUTBOX_FILE).write_bytes(GARBAGE)
    log = (tmp_path / "run.log").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-c", ENTRY, "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if (state / "status.json").exists():
                break
            time.sleep(0.2)
        assert process.poll() is None, Path(log.name).read_text()
    finally:
        process.terminate()
        process.wait(timeout=30)
    text = Path(log.name).read_text()
    assert "is corrupt" in text and "moved it aside to" in text
    [aside] = state.glob(f"{OUTBOX_FILE}.corrupt-*")
    assert aside.read_bytes() == GARBAGE
    with Outbox.open_in(state) as outbox:  # the fresh one is a working outbox
        assert outbox.depth() >= 0


def test_status_shows_an_unreadable_outbox_without_json(tmp_path: Path) -> None:
    write_json(tmp_path / "status.json", {"pid": os.getpid(), "running": True,
                                          "updated_at": time.time()})  # fmt: skip
    (tmp_path / OUTBOX_FILE).write_bytes(GARBAGE)
    result = cli("status", "--state-dir", str(tmp_path))
    assert "outbox: cannot read it: file is not a database" in result.stdout


@pytest.mark.parametrize(
    "fields",
    [
        {"updated_at": "yesterday"},
        {"pid": 12345678901234567890123},
        {"pid": "1", "tokens": "none", "last_heartbeat": [1], "reasons": {"a": 1}},
        {"updated_at": 1e400},
    ],
    ids=["updated_at", "huge-pid", "wrong-types", "infinite"],
)
def test_a_status_file_of_the_wrong_shape_is_reported_not_a_traceback(
    tmp_path: Path, fields: dict[str, object]
) -> None:
    value = {"pid": os.getpid(), "running": True, "updated_at": time.time(), **fields}
    (tmp_path / "status.json").write_text(json.dumps(value))
    for extra in ((), ("--json",)):
        result = cli("status", "--state-dir", str(tmp_path), *extra)
        assert "Traceback" not in result.stderr, result.stderr
        assert result.returncode in (0, 1)
        for name in fields:
            assert name in result.stdout  # named as ignored
    assert (
        "ignored field(s) of the wrong type" in cli("status", "--state-dir", str(tmp_path)).stdout
    )


def test_an_outbox_that_is_a_directory_stops_intervene_with_one_line(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    (tmp_path / OUTBOX_FILE).mkdir()
    result = cli("intervene", "--reason", "fan", "--state-dir", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"cooee-agent: error: cannot open outbox {tmp_path / OUTBOX_FILE}: Is a directory"
    ]


def test_sqlite_is_what_says_corrupt(tmp_path: Path) -> None:
    # The rule open_outbox relies on: a non-database is a DatabaseError, not an Operational one.
    (tmp_path / "x").write_bytes(GARBAGE)
    with pytest.raises(sqlite3.DatabaseError) as caught:
        sqlite3.connect(tmp_path / "x").execute("PRAGMA journal_mode=WAL")
    assert not isinstance(caught.value, sqlite3.OperationalError)
