"""A rack's cold start: one ``leader serve`` and N ``cooee-agent run`` processes on 127.0.0.1,
all started at once, each with its own state directory and hostname, bootstrapping to the Leader.

For each N: seconds until every agent is online at the Leader (the curve of hosts online over
time is in the JSON), then a soak of ``--soak`` seconds at a ``--interval`` heartbeat, after
which the Leader's own registry says how many heartbeats it heard and how many sequence numbers
it never got (must be 0). Also the agents' mean CPU share and RSS during the soak, and the
machine's core count, since every process shares it.

    .venv/bin/python benchmarks/cluster_cold_start.py [--agents 10 25 50] [--soak 120]
        [--interval 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "e2e"), str(REPO / "tests" / "bus")]

from cluster import Cluster  # noqa: E402
from e2eharness import World  # noqa: E402


def measure(count: int, *, soak: float, interval: int, tmp: Path) -> dict[str, Any]:
    world = World(tmp)
    try:
        cluster = Cluster(world, count, interval=interval)
        started = time.monotonic()
        curve = cluster.start(timeout=900.0)
        all_online_s = time.monotonic() - started
        processes = [psutil.Process(a.process.proc.pid) for a in cluster.agents]  # type: ignore[union-attr]
        before = cluster.leader_view()
        cpu_before = [p.cpu_times() for p in processes]
        time.sleep(soak)
        cpu_after = [p.cpu_times() for p in processes]
        rss_mb = [p.memory_info().rss / 2**20 for p in processes]
        view = cluster.heard_up_to(cluster.sent(), timeout=60.0)
        heard = sum(v["heartbeats_heard"] - before[h]["heartbeats_heard"] for h, v in view.items())
        missed = sum(v["heartbeats_missed"] for v in view.values())
        never = sum(v["seq"] - v["heartbeats_heard"] for v in view.values())
        shares = [
            (b.user + b.system - a.user - a.system) / soak
            for a, b in zip(cpu_before, cpu_after, strict=True)
        ]
        return {
            "agents": count,
            "seconds_to_all_online": round(all_online_s, 1),
            "online_curve": curve[:: max(1, len(curve) // 50)] + curve[-1:],
            "soak_s": soak,
            "heartbeat_interval_s": interval,
            "heartbeats_heard_in_soak": heard,
            "heartbeats_lost": missed + never,
            "agent_cpu_share_mean": round(sum(shares) / len(shares), 4),
            "agent_rss_mb_mean": round(sum(rss_mb) / len(rss_mb), 1),
        }
    finally:
        world.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[10, 25, 50])
    parser.add_argument("--soak", type=float, default=120.0, help="seconds (default 120)")
    parser.add_argument("--interval", type=int, default=2, help="heartbeat seconds (default 2)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    runs = []
    for count in args.agents:
        with tempfile.TemporaryDirectory(prefix=f"cooee-cold-{count}-") as tmp:
            run = measure(count, soak=args.soak, interval=args.interval, tmp=Path(tmp))
        runs.append(run)
        print(
            f"{count:4d} agents: all online in {run['seconds_to_all_online']:6.1f} s;"
            f" soak {run['soak_s']:.0f} s: {run['heartbeats_heard_in_soak']} heard,"
            f" {run['heartbeats_lost']} lost; agent CPU {100 * run['agent_cpu_share_mean']:.1f} %"
            f" of a core, RSS {run['agent_rss_mb_mean']:.0f} MB",
            flush=True,
        )
    result = {"cores": os.cpu_count(), "runs": runs}
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"cores": result["cores"]}))


if __name__ == "__main__":
    main()
