"""The cold-start benchmark's projection to a full rack: its fits, on points of known shape."""

from __future__ import annotations

from types import ModuleType

import pytest
from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_benchmark("cluster_cold_start")


def test_fit_recovers_a_line_and_a_parabola(bench: ModuleType) -> None:
    line = [(x, 2.0 + 0.5 * x) for x in (10.0, 25.0, 50.0)]
    assert bench.fit(line, 1) == pytest.approx([2.0, 0.5])
    parabola = [(x, 1.0 + 0.2 * x + 0.01 * x * x) for x in (10.0, 20.0, 25.0, 50.0)]
    assert bench.fit(parabola, 2) == pytest.approx([1.0, 0.2, 0.01])


def test_projection_prefers_the_parabola_for_points_on_one(bench: ModuleType) -> None:
    points = [(x, 1.0 + 0.2 * x + 0.01 * x * x) for x in (10.0, 20.0, 25.0, 50.0)]
    result = bench.projection(points)
    assert result["better_fit"] == "quadratic"
    quadratic = result["fits"]["quadratic"]
    assert quadratic["projected_seconds"] == pytest.approx(1.0 + 0.2 * 254 + 0.01 * 254**2, 0.01)
    assert result["fits"]["linear"]["residual_standard_error_s"] > 0


def test_projection_keeps_the_line_for_points_on_one(bench: ModuleType) -> None:
    points = [(x, 3.0 + 1.1 * x) for x in (10.0, 20.0, 25.0, 50.0)]
    result = bench.projection(points)
    assert result["better_fit"] == "linear"
    assert result["fits"]["linear"]["projected_seconds"] == pytest.approx(3.0 + 1.1 * 254)


def test_projection_judges_no_fit_that_has_no_point_to_spare(bench: ModuleType) -> None:
    three = bench.projection([(10.0, 9.0), (25.0, 21.0), (50.0, 55.0)])
    assert three["fits"]["quadratic"]["residual_standard_error_s"] is None
    assert three["better_fit"] is None
    two = bench.projection([(10.0, 9.0), (50.0, 55.0)])
    assert set(two["fits"]) == {"linear"} and two["better_fit"] is None
    assert bench.projection([(10.0, 9.0), (10.0, 9.5)])["fits"] == {}
