"""The agent at rest: CPU time per heartbeat, average CPU share of one core, and RSS.

Starts ``cooee-agent leader serve`` and ``cooee-agent run`` on 127.0.0.1 (temporary state
directories and config), lets the agent enrol, then measures the agent process with psutil in
two phases:

1. heartbeats every ``--interval`` seconds for ``--seconds`` seconds;
2. after SIGHUP with a one-hour interval (no heartbeats), the same time again: the idle cost
   (main loop, mesh heartbeats, Ollama poller).

CPU per heartbeat = (phase-1 rate - phase-2 rate) x interval; the average at the production
interval (30 s) = idle rate + CPU per heartbeat / 30. ``--interval 30 --seconds 600`` measures
the real thing instead (slow). Results are printed as JSON, with ratios to the targets
(< 1 % of one core on average, RSS < 120 MB): a ratio below 1 meets the target.

    .venv/bin/python benchmarks/agent_at_rest.py [--interval 1] [--seconds 60] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ENTRY = "from cooee_agent.cli import main; main()"
PRODUCTION_INTERVAL = 30.0
TARGET_CPU_PERCENT = 1.0
TARGET_RSS_MB = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def config_text(state: Path, bundle: str, leader: str, interval: float, ollama_port: int) -> str:
    return (
        f'state_dir = "{state}"\n'
        f'[leader]\nkeys = ["{bundle}"]\n'
        f'[mesh]\nlisten = "/ip4/127.0.0.1/tcp/0"\nbootstrap = ["{leader}"]\n'
        f"[heartbeat]\ninterval = {interval}\n"
        f'[ollama]\nhost = "http://127.0.0.1:{ollama_port}"\n'
    )


def status(state: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((state / "status.json").read_text()))
    except (OSError, ValueError):
        return {}


def seq(state: Path) -> int:
    beat = status(state).get("last_heartbeat") or {}
    return int(beat.get("seq", 0))


def measure(process: psutil.Process, state: Path, seconds: float) -> dict[str, float]:
    cpu0, seq0, t0 = sum(process.cpu_times()[:2]), seq(state), time.monotonic()
    peak = 0.0
    while time.monotonic() - t0 < seconds:
        time.sleep(min(1.0, seconds))
        peak = max(peak, process.memory_info().rss / 2**20)
    cpu1, seq1, t1 = sum(process.cpu_times()[:2]), seq(state), time.monotonic()
    return {
        "seconds": t1 - t0,
        "cpu_s": cpu1 - cpu0,
        "cpu_rate": (cpu1 - cpu0) / (t1 - t0),
        "heartbeats": seq1 - seq0,
        "rss_mb": process.memory_info().rss / 2**20,
        "rss_peak_mb": peak,
    }


def run(interval: float, seconds: float, warmup: float) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
    with tempfile.TemporaryDirectory(prefix="cooee-bench-") as tmp:
        root = Path(tmp)
        leader_dir, state, config = root / "leader", root / "agent", root / "agent.toml"
        keygen = subprocess.run(
            [sys.executable, "-c", ENTRY, "leader", "keygen", "--state-dir", str(leader_dir),
             "--json"],
            capture_output=True, text=True, check=True, env=env,
        )  # fmt: skip
        bundle = json.loads(keygen.stdout)["bundle"]
        leader = subprocess.Popen(
            [sys.executable, "-c", ENTRY, "leader", "serve", "--state-dir", str(leader_dir),
             "--listen", f"/ip4/127.0.0.1/tcp/{free_port()}"],
            stdout=subprocess.DEVNULL, stderr=(root / "leader.log").open("w"), env=env,
        )  # fmt: skip
        agent = None
        try:
            addrs = leader_dir / "leader.addrs"
            leader_addr = wait(lambda: addrs.exists() and addrs.read_text().split(), 60, "Leader")
            ollama_port = free_port()  # nothing listens: the agent announces itself degraded
            config.write_text(config_text(state, bundle, leader_addr[0], interval, ollama_port))
            agent = subprocess.Popen(
                [sys.executable, "-c", ENTRY, "run", "--config", str(config)],
                stdout=subprocess.DEVNULL, stderr=(root / "agent.log").open("w"), env=env,
            )  # fmt: skip
            wait(lambda: status(state).get("enrolment") == "enrolled", 60, "enrolment")
            time.sleep(warmup)
            process = psutil.Process(agent.pid)
            beating = measure(process, state, seconds)
            config.write_text(config_text(state, bundle, leader_addr[0], 3600, ollama_port))
            agent.send_signal(signal.SIGHUP)
            time.sleep(max(2.0, interval * 1.5))  # let a heartbeat already scheduled go out
            idle = measure(process, state, seconds)
        finally:
            for proc in (agent, leader):
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        proc.kill()
    per_heartbeat = max(0.0, beating["cpu_rate"] - idle["cpu_rate"]) * interval
    average = idle["cpu_rate"] + per_heartbeat / PRODUCTION_INTERVAL
    rss = max(beating["rss_peak_mb"], idle["rss_peak_mb"])
    return {
        "interval_s": interval,
        "phase_seconds": seconds,
        "heartbeating": beating,
        "idle": idle,
        "cpu_ms_per_heartbeat": per_heartbeat * 1000,
        "cpu_percent_at_30s": average * 100,
        "rss_mb": rss,
        "ratio_cpu_to_target": average * 100 / TARGET_CPU_PERCENT,
        "ratio_rss_to_target": rss / TARGET_RSS_MB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--interval", type=float, default=1.0, help="heartbeat interval (s)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each phase (s)")
    parser.add_argument("--warmup", type=float, default=5.0, help="wait after enrolment (s)")
    parser.add_argument("--json", type=Path, help="also write the result to this file")
    args = parser.parse_args()
    result = run(args.interval, args.seconds, args.warmup)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    print(
        f"CPU {result['cpu_percent_at_30s']:.3f} % of one core at a 30 s interval "
        f"({result['ratio_cpu_to_target']:.2f} x target), "
        f"{result['cpu_ms_per_heartbeat']:.1f} ms CPU per heartbeat, "
        f"RSS {result['rss_mb']:.0f} MB ({result['ratio_rss_to_target']:.2f} x target)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
