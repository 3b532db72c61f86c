"""CLI start-up: ``cooee-agent token decode`` and ``cooee-agent --help`` against ``python -c pass``.

Runs each command ``--runs`` times, round-robin so that every command sees the same machine load,
and reports the median wall time of each and its ratio to the bare interpreter's. The target
(issue: lazy CLI verbs): ``token decode`` within 4 x ``python -c pass``; a ratio below 4 meets
it. The commands run through the installed ``cooee-agent`` console script beside this Python,
as a user runs them.

    .venv/bin/python benchmarks/cli_startup.py [--runs 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

CLI = str(Path(sys.executable).with_name("cooee-agent"))
TARGET_RATIO = 4.0
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "cooee-agent token decode": [CLI, "token", "decode", "458RV"],
    "cooee-agent --help": [CLI, "--help"],
}


def wall_time(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def run(runs: int) -> dict[str, object]:
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for argv in COMMANDS.values():
        wall_time(argv)  # warm the page cache and the .pyc files
    for _ in range(runs):
        for name, argv in COMMANDS.items():
            samples[name].append(wall_time(argv))
    medians = {name: statistics.median(times) * 1000 for name, times in samples.items()}
    bare = medians["python -c pass"]
    return {
        "runs": runs,
        "median_ms": {name: round(ms, 1) for name, ms in medians.items()},
        "ratio_to_python": {name: round(ms / bare, 2) for name, ms in medians.items()},
        "ratio_decode_to_target": round(
            medians["cooee-agent token decode"] / bare / TARGET_RATIO, 2
        ),
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
    assert isinstance(ratios, dict)
    print(
        f"token decode {ratios['cooee-agent token decode']:.2f} x python -c pass "
        f"(target {TARGET_RATIO:.0f} x), --help {ratios['cooee-agent --help']:.2f} x",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
