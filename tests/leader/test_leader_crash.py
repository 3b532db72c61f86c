"""SIGKILL the Leader in the middle of ingesting a batch: the registry stays consistent and
ingesting again gives every host the id an uninterrupted run gives it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from enrolment_factory import agent_keys, record

from cooee_agent.leader.registrar import Registrar
from cooee_agent.leader.registry import REGISTRY_FILE
from cooee_agent.protocol.keys import load_leader_keys
from cooee_agent.protocol.sealing import seal_enrolment

HOSTS = 400


def count_hosts(path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT count(*) FROM hosts").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_sigkill_mid_batch_leaves_a_consistent_registry_and_stable_ids(
    leader_dir: Path, tmp_path: Path
) -> None:
    bundle = load_leader_keys(leader_dir).bundle
    now = datetime.now(UTC)
    batch = tmp_path / "batch"
    batch.mkdir()
    hosts = [(n, agent_keys()) for n in range(HOSTS)]
    files = []
    for n, keys in hosts:
        path = batch / f"{n:04d}.json"
        rec = record(keys, host=n, gpus=2, issued_at=now)
        path.write_bytes(seal_enrolment(rec, keys, bundle, sent_at=now))
        files.append(path)
    # A FIFO last: the Leader blocks there, so it is still mid-batch whenever the kill lands.
    fifo = batch / "zzzz.fifo"
    os.mkfifo(fifo)
    entry = "from cooee_agent.cli import main; main()"
    command = [sys.executable, "-c", entry, "leader", "ingest", "--state-dir"]
    process = subprocess.Popen(
        [*command, str(leader_dir), *map(str, files), str(fifo)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    registry = leader_dir / REGISTRY_FILE
    deadline = time.monotonic() + 60
    while count_hosts(registry) < HOSTS // 4 and time.monotonic() < deadline:
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    committed = count_hosts(registry)
    assert 0 < committed < HOSTS, "the kill did not land mid-batch"

    with Registrar(leader_dir) as leader:
        assert leader.registry.check() == []
        results = [leader.ingest(path.read_bytes(), now=now) for path in files]
        replayed = [r for r in results if r.reason == "replayed"]
        assert len(replayed) == committed
        assert all(r.accepted for r in results if r.reason != "replayed")
        ids = {h.hostname: h.host_id for h in leader.registry.hosts()}
        assert leader.registry.check() == []

    reference_dir = tmp_path / "reference"
    reference_dir.mkdir(mode=0o700)
    for name in ("leader-signing.key", "leader-identity.age"):
        (reference_dir / name).write_bytes((leader_dir / name).read_bytes())
        (reference_dir / name).chmod(0o600)
    with Registrar(reference_dir) as reference:
        for path in files:
            assert reference.ingest(path.read_bytes(), now=now).accepted
        assert {h.hostname: h.host_id for h in reference.registry.hosts()} == ids

    with Registrar(leader_dir) as leader:  # every host enrols again with a new seal
        for n, keys in hosts:
            rec = record(keys, host=n, gpus=2)
            result = leader.ingest(seal_enrolment(rec, keys, bundle))
            assert result.accepted and result.host_id == ids[rec.host.hostname]
