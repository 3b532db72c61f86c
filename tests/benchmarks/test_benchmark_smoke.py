"""Each benchmark in benchmarks/ at a smoke size: it runs to the end and reports every figure.

Only the shape of the report is checked (keys, types, finite and non-negative numbers); the
numbers themselves depend on the machine and are never asserted.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = PROJECT_ROOT / "benchmarks"


def run_benchmark(
    name: str, *args: str, tmp_path: Path, timeout: float, ok: tuple[int, ...] = (0,)
) -> tuple[int, dict[str, Any]]:
    """``benchmarks/NAME.py ARGS --json FILE`` in a session of its own, so that whatever it
    started is killed with it; returns the exit status and the JSON it wrote."""
    report = tmp_path / f"{name}.json"
    process = subprocess.Popen(
        [sys.executable, str(BENCHMARKS / f"{name}.py"), *args, "--json", str(report)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        raise AssertionError(f"{name} ran past {timeout:.0f} s:\n{out}\n{err}") from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # children it left behind
    assert process.returncode in ok, f"{name} exited {process.returncode}:\n{out}\n{err}"
    return process.returncode, json.loads(report.read_text())


def assert_figures(report: dict[str, Any], figures: dict[str, type]) -> None:
    """Every figure is present, of its type, finite and not negative."""
    missing = sorted(set(figures) - set(report))
    assert not missing, f"report lacks {missing}: {report}"
    for key, kind in figures.items():
        value = report[key]
        assert type(value) is kind, f"{key} = {value!r} is not {kind.__name__}"
        assert math.isfinite(value) and value >= 0, f"{key} = {value!r}"


def assert_curve(curve: list[list[float]], hosts: int) -> None:
    """(seconds since start, hosts online) points, in time order, ending with every host."""
    assert curve, "empty curve"
    times = [point[0] for point in curve]
    assert times == sorted(times) and times[0] >= 0
    assert all(type(point[1]) is int and 0 <= point[1] <= hosts for point in curve)
    assert curve[-1][1] == hosts


def test_leader_ingest_reports_every_figure(tmp_path: Path) -> None:
    # Exit status 1 says the ingest missed its target ratio: a reported result, not a failure.
    status, report = run_benchmark(
        "leader_ingest",
        *("--hosts", "4", "--slots", "2", "--models", "1", "--rounds", "1"),
        tmp_path=tmp_path,
        timeout=60,
        ok=(0, 1),
    )
    assert_figures(
        report,
        {
            **dict.fromkeys(
                ["hosts", "slots", "models", "agent_tuples_per_host", "envelope_bytes_mean"], int
            ),
            **dict.fromkeys(["batch", "hosts_per_s", "slots_per_s", "cores"], int),
            **dict.fromkeys(["ingest_s", "ingest_one_by_one_s", "crypto_s"], float),
            **dict.fromkeys(["ingest_ms_per_host", "crypto_ms_per_host"], float),
            **dict.fromkeys(["ratio_ingest_to_crypto", "ratio_one_by_one_to_crypto"], float),
            "target_ratio": float,
            "ratio_full_to_normal": float,
            "ratio_one_by_one_full_to_normal": float,
        },
    )
    assert (report["hosts"], report["slots"], report["agent_tuples_per_host"]) == (4, 2, 2)
    assert set(report["synchronous"]) == {"NORMAL", "FULL"}
    for level in report["synchronous"].values():
        assert_figures(level, {"ingest_s": float, "one_by_one_s": float})
        assert_figures(level, dict.fromkeys(["hosts_per_s", "slots_per_s"], int))
        assert_figures(
            level, dict.fromkeys(["one_by_one_hosts_per_s", "one_by_one_slots_per_s"], int)
        )
    assert isinstance(report["filesystem"], str) and report["filesystem"]
    if status == 1:
        assert report["ratio_ingest_to_crypto"] >= report["target_ratio"]
    else:
        assert report["ratio_ingest_to_crypto"] <= report["target_ratio"]


def test_cli_startup_reports_every_figure(tmp_path: Path) -> None:
    _, report = run_benchmark("cli_startup", "--runs", "2", tmp_path=tmp_path, timeout=60)
    commands = ["python -c pass", "cooee-agent token decode", "cooee-agent --help"]
    commands += ["cooee-agent status", "cooee-agent discover"]
    assert report["runs"] == 2
    assert_figures(report["median_ms"], dict.fromkeys(commands, float))
    assert_figures(report["ratio_to_python"], dict.fromkeys(commands, float))
    assert_figures(
        report,
        {
            "ratio_decode_to_target": float,
            "discover_target_ms": float,
            "ratio_discover_to_target": float,
        },
    )
    assert type(report["discover_under_target"]) is bool


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_agent_at_rest_reports_every_figure(tmp_path: Path) -> None:
    _, report = run_benchmark(
        "agent_at_rest",
        *("--interval", "1", "--seconds", "3", "--warmup", "1"),
        tmp_path=tmp_path,
        timeout=100,
    )
    phase = {"seconds": float, "cpu_s": float, "cpu_rate": float, "heartbeats": int}
    phase |= {"rss_mb": float, "rss_peak_mb": float}
    assert_figures(report["heartbeating"], phase)
    assert_figures(report["idle"], phase)
    assert report["heartbeating"]["heartbeats"] > 0, "no heartbeat to take the cost of"
    assert_figures(
        report,
        {
            "interval_s": float,
            "phase_seconds": float,
            "cpu_ms_per_heartbeat": float,
            "cpu_percent_at_30s": float,
            "rss_mb": float,
            "ratio_cpu_to_target": float,
            "ratio_rss_to_target": float,
        },
    )


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_cluster_cold_start_reports_every_figure(tmp_path: Path) -> None:
    # Three N, so that both fits are made; the plot only where matplotlib (the dev extra) is.
    plotting = importlib.util.find_spec("matplotlib") is not None
    plot = tmp_path / "online.png"
    _, report = run_benchmark(
        "cluster_cold_start",
        *("--agents", "1", "2", "3", "--soak", "2"),
        *(("--plot", str(plot)) if plotting else ()),
        tmp_path=tmp_path,
        timeout=160,
    )
    assert_figures(report, {"cores": int})
    assert [run["agents"] for run in report["runs"]] == [1, 2, 3]
    for run in report["runs"]:
        assert_figures(
            run,
            {
                "seconds_to_all_online": float,
                "soak_s": float,
                "heartbeat_interval_s": int,
                "heartbeats_heard_in_soak": int,
                "heartbeats_lost": int,
                "agent_cpu_share_mean": float,
                "agent_rss_mb_mean": float,
                "agent_rss_mb_max": float,
                "leader_rss_mb": float,
            },
        )
        assert_curve(run["online_curve"], run["agents"])
    projection = report["projection"]
    assert projection["hosts"] == 254
    assert set(projection["fits"]) == {"linear", "quadratic"}
    for name, degree in (("linear", 1), ("quadratic", 2)):
        made = projection["fits"][name]
        assert len(made["coefficients"]) == degree + 1
        assert all(type(c) is float and math.isfinite(c) for c in made["coefficients"])
        assert type(made["projected_seconds"]) is float
        assert math.isfinite(made["projected_seconds"])
        assert_figures(made, {"residual_sum_of_squares": float})
    # Three points: the line has one to spare, the parabola none, so neither is preferred.
    assert_figures(projection["fits"]["linear"], {"residual_standard_error_s": float})
    assert projection["fits"]["quadratic"]["residual_standard_error_s"] is None
    assert projection["better_fit"] is None
    if plotting:
        assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_dht_resolve_reports_every_figure(tmp_path: Path) -> None:
    _, report = run_benchmark(
        "dht_resolve",
        *("--nodes", "3", "--lookups", "5", "--cold", "2", "--commands", "2", "--refresh", "2"),
        tmp_path=tmp_path,
        timeout=130,
    )
    assert report["nodes"] == 3
    assert_figures(report, {"records_put": int, "put_all_s": float, "target_p95_ms": int})
    assert report["refresh_s"] == 2
    assert report["records_put"] == 2
    lookups = {"registry": 5, "dht_warm": 5, "resolve_mesh": 5, "resolve_mesh_no_agent": 2}
    lookups |= {"resolve_mesh_not_held": 5, "resolve_mesh_not_held_leader_down": 5}
    lookups |= {"dht_leader_down": 5, "python": 2, "command": 2, "command_no_agent": 2}
    for name, count in lookups.items():
        assert_figures(report[name], {"n": int, "p50_ms": float, "p95_ms": float, "max_ms": float})
        assert report[name]["n"] == count, name
