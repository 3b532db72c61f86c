"""``cooee-agent discover`` on this machine, as a real process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from discovery_support import OLLAMA_FIXTURES, OllamaServer, closed_port

from cooee_agent.identity.canonical import normalise_mac

CLI = [sys.executable, "-c", "from cooee_agent.cli import main; main()"]


def run(args: list[str], tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    environment = {**os.environ, "HOME": str(tmp_path), "OLLAMA_MODELS": str(tmp_path), **env}
    environment.pop("OLLAMA_HOST", None)
    environment.update(env)
    started = time.monotonic()
    done = subprocess.run(
        CLI + args, capture_output=True, text=True, env=environment, timeout=30, check=False
    )
    return done, time.monotonic() - started


def test_discover_json_on_this_machine_is_fast_and_names_what_it_tried(tmp_path: Path) -> None:
    port = closed_port()
    done, elapsed = run(["discover", "--json"], tmp_path, OLLAMA_HOST=f"127.0.0.1:{port}")
    assert elapsed < 2.0, f"discover took {elapsed:.2f} s"
    assert "Traceback" not in done.stderr
    document = json.loads(done.stdout)
    assert document["host"]["hostname"] == socket.gethostname()
    ollama = [f for f in document["failures"] if f["probe"] == "ollama"]
    assert ollama and ollama[0]["reason"] == "unreachable"
    assert f"127.0.0.1:{port}" in ollama[0]["detail"]
    assert document["ollama"]["address"] == f"http://127.0.0.1:{port}"
    assert all(f["reason"] and f["detail"] for f in document["failures"])
    if document["nic"] is not None:
        assert normalise_mac(document["nic"]["mac"])
        assert done.returncode == 0
    else:  # a host without a physical NIC (a container): no identity, said clearly
        assert done.returncode == 1 and "no usable MAC" in done.stderr


def test_discover_with_a_served_ollama_lists_models_and_agents(
    tmp_path: Path, ollama_server: Callable[[str], OllamaServer]
) -> None:
    server = ollama_server("v0.12.6")
    done, _ = run(["discover", "--json", "--ollama-host", server.url], tmp_path)
    document = json.loads(done.stdout)
    assert document["ollama"]["source"] == "api"
    assert [m["name"] for m in document["ollama"]["loaded"]] == ["llama3.2:latest"]
    if document["nic"] is not None:
        models = {t["model"] for t in document["tuples"]}
        assert "llama3.2:latest" in models and "gpt-oss:120b-cloud" not in models


def test_discover_table_shows_models_from_manifests_and_failed_probes(tmp_path: Path) -> None:
    done, _ = run(
        ["discover"],
        tmp_path,
        OLLAMA_HOST=f"127.0.0.1:{closed_port()}",
        OLLAMA_MODELS=str(OLLAMA_FIXTURES / "models"),
        COLUMNS="200",
    )
    assert "Traceback" not in done.stderr
    assert "gemma:2b" in done.stdout and "on-disk manifests" in done.stdout
    assert "Probes that failed" in done.stdout and "unreachable" in done.stdout
