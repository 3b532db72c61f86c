"""Min, median and max of every numeric figure over several runs of one benchmark.

Each benchmark writes its figures with ``--json FILE``; run it a few times and give this the
files. Nested objects are flattened to dotted names; a figure missing from a run is left out of
that run's count (the ``runs`` column says how many had it).

    .venv/bin/python benchmarks/summarise.py run1.json run2.json run3.json [--markdown]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any


def flatten(value: Any, prefix: str = "") -> dict[str, float]:
    """The numbers in ``value`` by dotted path; lists and strings are not figures."""
    if isinstance(value, bool):
        return {}
    if isinstance(value, int | float):
        return {prefix: float(value)} if math.isfinite(value) else {}
    if isinstance(value, dict):
        found: dict[str, float] = {}
        for key, item in value.items():
            found.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return found
    return {}


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per figure: runs, min, median and max, in the order the first run gives them."""
    flat = [flatten(run) for run in runs]
    names = list(dict.fromkeys(name for run in flat for name in run))
    table: dict[str, dict[str, float]] = {}
    for name in names:
        values = [run[name] for run in flat if name in run]
        table[name] = {
            "runs": len(values),
            "min": min(values),
            "median": statistics.median(values),
            "max": max(values),
        }
    return table


def _number(value: float) -> str:
    return f"{value:.0f}" if value == int(value) and abs(value) >= 100 else f"{value:.3g}"


def markdown(table: dict[str, dict[str, float]]) -> str:
    lines = ["| figure | runs | min | median | max |", "|---|---|---|---|---|"]
    for name, row in table.items():
        cells = [_number(row[k]) for k in ("min", "median", "max")]
        lines.append(f"| {name} | {int(row['runs'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="JSON outputs of one benchmark")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    runs = []
    for path in args.files:
        try:
            runs.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as error:
            parser.error(f"{path}: {error}")
    table = summarise(runs)
    print(markdown(table) if args.markdown else json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
