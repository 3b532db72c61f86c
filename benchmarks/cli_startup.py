"""CLI start-up: ``token decode``, ``--help``, ``status``, ``discover`` against ``python -c pass``.

Runs each command ``--runs`` times, round-robin so that every command sees the same machine load,
and reports the median wall time of each and its ratio to the bare interpreter's. The commands
run through the installed ``cooee-agent`` console script beside this Python, as a user runs them.

- ``status`` reads a throw-away configuration and the status.json of an agent that has stopped,
  so it reports "not running" and exits 1, as it does on any host whose agent is down;
- ``discover`` asks an Ollama API this benchmark serves on 127.0.0.1 from the v0.12.6 fixtures
  (fixtures/ollama/api), so its Ollama probe does the same HTTP requests as against a real one.

Targets: ``token decode`` within 4 x ``python -c pass`` (issue: lazy CLI verbs;
``ratio_decode_to_target`` below 1 meets it), and ``discover`` within 0.5 s
(``ratio_discover_to_target`` below 1, ``discover_under_target``).

    .venv/bin/python benchmarks/cli_startup.py [--runs 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any, NamedTuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "discovery"))

from discovery_support import OLLAMA_FIXTURES, start_ollama_server  # noqa: E402

CLI = str(Path(sys.executable).with_name("cooee-agent"))
TARGET_RATIO = 4.0
DISCOVER_TARGET_MS = 500.0
BARE = "python -c pass"
DECODE = "cooee-agent token decode"
STATUS = "cooee-agent status"
DISCOVER = "cooee-agent discover"


class Command(NamedTuple):
    argv: list[str]
    exits: Collection[int] = (0,)  # the exit statuses this command gives here when it works


def commands(scratch: Path, ollama_url: str) -> dict[str, Command]:
    config = scratch / "config.toml"
    state = scratch / "state"
    state.mkdir()
    config.write_text(f'state_dir = "{state}"\n')
    (state / "status.json").write_text(json.dumps(stopped_agent_status()))
    return {
        BARE: Command([sys.executable, "-c", "pass"]),
        DECODE: Command([CLI, "token", "decode", "458RV"]),
        "cooee-agent --help": Command([CLI, "--help"]),
        # An agent that is not running is exit status 1: what this benchmark sets up.
        STATUS: Command([CLI, "status", "--config", str(config)], exits=(1,)),
        # Exit status 1 on a host with no physical NIC (a container): no identity to form.
        DISCOVER: Command([CLI, "discover", "--ollama-host", ollama_url], exits=(0, 1)),
    }


def stopped_agent_status() -> dict[str, Any]:
    """status.json as an enrolled agent with two slots leaves it when it stops."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    return {
        "pid": 2**22,
        "running": False,
        "updated_at": now,
        "updated": stamp,
        "enrolment": "enrolled",
        "host_id": 17,
        "hostname": "gpu017.rack00.cluster.example",
        "tokens": [
            {"slot": slot, "token": "458RV", "gpu_id": f"gpu-00000011-0000-4000-8000-{slot:012x}"}
            for slot in range(2)
        ],
        "state": "available",
        "reasons": [],
        "peers": 3,
        "last_heartbeat": {"at": stamp, "seq": 120, "state": "available"},
    }


def environment(scratch: Path) -> dict[str, str]:
    """This environment, less what would point a command at this machine's own agent or Ollama."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("OLLAMA_HOST", "COOEE_CONFIG", "COOEE_STATE_DIR")
    }
    env["HOME"] = str(scratch)
    env["OLLAMA_MODELS"] = str(scratch / "models")  # none on disk: the API is what is asked
    return env


def wall_time(name: str, command: Command, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        command.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, check=False
    )
    elapsed = time.perf_counter() - start
    if done.returncode not in command.exits:
        raise SystemExit(f"{name} exited {done.returncode}:\n{done.stderr.decode()}")
    return elapsed


def run(runs: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="cooee-bench-cli-") as tmp:
        scratch = Path(tmp)
        ollama = start_ollama_server(OLLAMA_FIXTURES / "api" / "v0.12.6")
        try:
            table = commands(scratch, ollama.url)
            env = environment(scratch)
            samples: dict[str, list[float]] = {name: [] for name in table}
            for name, command in table.items():
                wall_time(name, command, env)  # warm the page cache and the .pyc files
            for _ in range(runs):
                for name, command in table.items():
                    samples[name].append(wall_time(name, command, env))
        finally:
            ollama.stop()
    medians = {name: statistics.median(times) * 1000 for name, times in samples.items()}
    bare = medians[BARE]
    return {
        "runs": runs,
        "median_ms": {name: round(ms, 1) for name, ms in medians.items()},
        "ratio_to_python": {name: round(ms / bare, 2) for name, ms in medians.items()},
        "ratio_decode_to_target": round(medians[DECODE] / bare / TARGET_RATIO, 2),
        "discover_target_ms": DISCOVER_TARGET_MS,
        "ratio_discover_to_target": round(medians[DISCOVER] / DISCOVER_TARGET_MS, 2),
        "discover_under_target": medians[DISCOVER] < DISCOVER_TARGET_MS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs of each command (median)")
    parser.add_argument("--json", type=Path, help="also write the result to this file")
    args = parser.parse_args()
    result = run(args.runs)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    ratios = result["ratio_to_python"]
    medians = result["median_ms"]
    assert isinstance(ratios, dict) and isinstance(medians, dict)
    print(
        f"token decode {ratios[DECODE]:.2f} x python -c pass (target {TARGET_RATIO:.0f} x), "
        f"--help {ratios['cooee-agent --help']:.2f} x, status {ratios[STATUS]:.2f} x, "
        f"discover {medians[DISCOVER]:.0f} ms (target {DISCOVER_TARGET_MS:.0f} ms)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
