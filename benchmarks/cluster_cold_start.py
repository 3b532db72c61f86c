"""A rack's cold start: one ``leader serve`` and N ``cooee-agent run`` processes on 127.0.0.1,
all started at once, each with its own state directory and hostname, bootstrapping to the Leader.

For each N: seconds until every agent is online at the Leader (the curve of hosts online over
time is in the JSON, and drawn by ``--plot``), then a soak of ``--soak`` seconds at a
``--interval`` heartbeat, after which the Leader's own registry says how many heartbeats it heard
and how many sequence numbers it never got (must be 0). Also the agents' mean CPU share during
the soak, the RSS of the Leader and of the agents (mean and largest) at its end, and the
machine's core count, since every process shares it.

From the seconds to all online at each N, least-squares fits of time against N (linear, and
quadratic given three or more N) project a 254-host rack's cold start; the JSON says which fit
has the smaller residual standard error, which takes four or more N to compare.

    .venv/bin/python benchmarks/cluster_cold_start.py [--agents 10 25 50] [--soak 120]
        [--interval 2] [--json FILE] [--plot FILE.png]
"""

from __future__ import annotations

import argparse
import json
import math
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

RACK = 254  # hosts a Leader's cluster holds (host ids 1 to 254)


def measure(count: int, *, soak: float, interval: int, tmp: Path) -> dict[str, Any]:
    world = World(tmp)
    try:
        cluster = Cluster(world, count, interval=interval)
        started = time.monotonic()
        curve = cluster.start(timeout=900.0)
        all_online_s = time.monotonic() - started
        processes = [psutil.Process(a.process.proc.pid) for a in cluster.agents]  # type: ignore[union-attr]
        leader = psutil.Process(world.leader.proc.pid)  # type: ignore[union-attr]
        before = cluster.leader_view()
        cpu_before = [p.cpu_times() for p in processes]
        time.sleep(soak)
        cpu_after = [p.cpu_times() for p in processes]
        rss_mb = [p.memory_info().rss / 2**20 for p in processes]
        leader_rss_mb = leader.memory_info().rss / 2**20
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
            "agent_rss_mb_max": round(max(rss_mb), 1),
            "leader_rss_mb": round(leader_rss_mb, 1),
        }
    finally:
        world.close()


def fit(points: list[tuple[float, float]], degree: int) -> list[float]:
    """Least-squares coefficients c0, c1, ... of y = c0 + c1 x + c2 x^2 ... through ``points``:
    the normal equations, solved by Gaussian elimination (a handful of points, no numpy)."""
    size = degree + 1
    rows = [
        [sum(x ** (i + j) for x, _ in points) for j in range(size)]
        + [sum(y * x**i for x, y in points)]
        for i in range(size)
    ]
    for col in range(size):
        pivot = max(range(col, size), key=lambda r: abs(rows[r][col]))
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(size):
            if r != col:
                factor = rows[r][col] / rows[col][col]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col], strict=True)]
    return [rows[i][size] / rows[i][i] for i in range(size)]


def projection(points: list[tuple[float, float]], hosts: int = RACK) -> dict[str, Any]:
    """Fits of seconds to all online against agents, and each one's value at ``hosts``.

    A fit is judged by its residual standard error, sqrt(sum of squared residuals / (points -
    coefficients)): the sum alone always favours the fit with more coefficients. A fit with no
    points to spare (a line through two, a parabola through three) has none, and is not judged.
    A tie goes to the line, the fit listed first.
    """
    distinct = len({x for x, _ in points})
    fits: dict[str, Any] = {}
    for name, degree in (("linear", 1), ("quadratic", 2)):
        if distinct <= degree:
            continue
        coefficients = fit(points, degree)

        def at(x: float, c: list[float] = coefficients) -> float:
            return sum(k * x**i for i, k in enumerate(c))

        squares = sum((y - at(x)) ** 2 for x, y in points)
        spare = len(points) - len(coefficients)
        fits[name] = {
            "coefficients": [float(f"{c:.4g}") for c in coefficients],
            "residual_sum_of_squares": round(squares, 3),
            "residual_standard_error_s": round(math.sqrt(squares / spare), 3) if spare else None,
            "projected_seconds": round(at(hosts), 1),
        }
    judged = {n: f["residual_standard_error_s"] for n, f in fits.items()}
    judged = {n: error for n, error in judged.items() if error is not None}
    return {
        "hosts": hosts,
        "model": "seconds_to_all_online = c0 + c1 * agents [+ c2 * agents^2]",
        "fits": fits,
        "better_fit": min(judged, key=judged.__getitem__) if len(judged) > 1 else None,
        "better_fit_by": "the smaller residual standard error; null until two fits have one"
        " (four or more N)",
    }


def plot(runs: list[dict[str, Any]], cores: int | None, path: Path) -> None:
    """Hosts online over time, one curve per N, on one figure."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib.ticker import MaxNLocator

    figure, axes = pyplot.subplots(figsize=(8, 5))
    for run in runs:
        curve = [(0.0, 0), *map(tuple, run["online_curve"])]
        seconds, online = zip(*curve, strict=True)
        count = run["agents"]
        axes.step(seconds, online, where="post", label=f"{count} agent{'s' * (count != 1)}")
    axes.set_title(f"Cold start: hosts online at the Leader ({cores} cores shared)")
    axes.set_xlabel("seconds since the agents started")
    axes.set_ylabel("hosts online")
    axes.set_ylim(bottom=0)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[10, 25, 50])
    parser.add_argument("--soak", type=float, default=120.0, help="seconds (default 120)")
    parser.add_argument("--interval", type=int, default=2, help="heartbeat seconds (default 2)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--plot", type=Path, help="draw hosts online over time to this PNG")
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
            f" of a core, RSS {run['agent_rss_mb_mean']:.0f} MB (largest"
            f" {run['agent_rss_mb_max']:.0f}); Leader RSS {run['leader_rss_mb']:.0f} MB",
            flush=True,
        )
    points = [(float(run["agents"]), float(run["seconds_to_all_online"])) for run in runs]
    result = {"cores": os.cpu_count(), "runs": runs, "projection": projection(points)}
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.plot is not None:
        plot(runs, result["cores"], args.plot)
    print(json.dumps({"cores": result["cores"], "projection": result["projection"]}, indent=2))


if __name__ == "__main__":
    main()
