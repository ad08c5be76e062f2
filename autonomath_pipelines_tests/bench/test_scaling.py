"""Scaling of loops A and E with the window: slopes, the temporary world scales, input checks."""

from __future__ import annotations

import math

import pytest

from autonomath_pipelines.bench.scaling import DAYS, loglog_slope, registered_scale, run_scaling_benchmark
from autonomath_pipelines.cli import main
from autonomath_pipelines.demo import world


def test_loglog_slope():
    xs = [1e4, 1e5, 1e6]
    assert loglog_slope(xs, [2 * x for x in xs]) == pytest.approx(1.0)
    assert loglog_slope(xs, [x**2 for x in xs]) == pytest.approx(2.0)
    assert loglog_slope(xs, [5, 5, 5]) == pytest.approx(0.0)
    assert loglog_slope(xs[:1], [1]) is None


def test_scaling_worlds_are_production_shaped_and_registered_only_while_built():
    with registered_scale(100_000) as name:
        scale = world.SCALES[name]
        assert (scale.days, scale.queries_per_day) == (DAYS, math.ceil(100_000 / DAYS))
        assert scale.programs == world.SCALES["production"].programs
    assert name not in world.SCALES


def test_bad_requests_are_refused_before_building_anything(tmp_path, capsys):
    with pytest.raises(ValueError, match="sizes"):
        run_scaling_benchmark([10], out_dir=str(tmp_path), world_dir=tmp_path)
    with pytest.raises(ValueError, match="not B"):
        run_scaling_benchmark([10_000], ["B"], out_dir=str(tmp_path), world_dir=tmp_path)
    assert main(["bench", "scaling", "--sizes", "10", "--out", str(tmp_path)]) == 2
    assert not list(tmp_path.glob("*.db"))


@pytest.mark.slow
def test_scaling_run_on_two_small_worlds(tmp_path):
    result = run_scaling_benchmark(
        [3_000, 6_000], ["A", "E"], str(tmp_path), say=lambda line: None, world_dir=tmp_path / "worlds"
    )
    assert all(r["success"] for r in result["results"]) and len(result["results"]) == 8
    assert {r["phase"] for r in result["results"]} == {"cold", "warm"}
    assert all(r["texts_embedded"] == 0 for r in result["results"] if r["phase"] == "warm")
    assert set(result["slopes"]) == {"A/cold", "A/warm", "E/cold", "E/warm"}
    assert (tmp_path / "bench_scaling.png").is_file() and (tmp_path / "bench_scaling.md").is_file()
