"""The summary of several benchmark runs: min, median and max per figure, nested ones flattened."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from benchmark_scripts import BENCHMARKS, load_benchmark

SCRIPT = BENCHMARKS / "summarise.py"


@pytest.fixture(scope="module")
def summarise() -> ModuleType:
    return load_benchmark("summarise")


def test_each_figure_gets_min_median_max_over_the_runs_that_have_it(
    summarise: ModuleType,
) -> None:
    runs = [
        {"a": 3, "nested": {"b": 1.5}, "text": "x", "flag": True, "list": [1, 2]},
        {"a": 1, "nested": {"b": 2.5}},
        {"a": 2, "nested": {"b": float("nan")}, "late": 7},
    ]
    table = summarise.summarise(runs)
    assert list(table) == ["a", "nested.b", "late"]
    assert table["a"] == {"runs": 3, "min": 1, "median": 2, "max": 3}
    assert table["nested.b"] == {"runs": 2, "min": 1.5, "median": 2.0, "max": 2.5}
    assert table["late"]["runs"] == 1


def test_the_command_prints_a_markdown_table_and_refuses_a_file_that_is_not_json(
    tmp_path: Path,
) -> None:
    good = [tmp_path / "1.json", tmp_path / "2.json"]
    for path, value in zip(good, (10, 30), strict=True):
        path.write_text(json.dumps({"hosts_per_s": value}))
    out = subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, good), "--markdown"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "| hosts_per_s | 2 | 10 | 20 | 30 |" in out
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    refused = subprocess.run(
        [sys.executable, str(SCRIPT), str(bad)], capture_output=True, text=True
    )
    assert refused.returncode == 2 and "bad.json" in refused.stderr
