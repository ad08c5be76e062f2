"""The loop cost benchmark: fresh processes, cold and warm, monthly totals at the catalog cadences."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest

from autonomath_pipelines.bench.loops import (
    JSON_NAME,
    MD_NAME,
    PNG_NAME,
    bench_partition,
    run_loops_benchmark,
    runs_per_month,
    world_as_of,
)
from autonomath_pipelines.bench.process import code_provenance, peak_rss_mb, rss_mb, world_provenance
from autonomath_pipelines.catalog import LOOP_SPECS, loop_spec
from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.demo import truth_path
from autonomath_pipelines_tests.conftest import AS_OF


def test_runs_per_month_and_the_ceilings_budget():
    assert {s.letter: runs_per_month(s) for s in LOOP_SPECS if s.letter in "ABH"} == {"A": 4.35, "B": 1.0, "H": 30.0}
    budget_min = sum(s.cost_ceiling_cpu_min * runs_per_month(s) for s in LOOP_SPECS)
    assert budget_min == pytest.approx(413.05)  # the seed's ~6-7 CPU-hours a month


def test_partition_is_the_one_the_schedule_runs_when_the_logs_end(small_world_pristine):
    end = world_as_of(str(small_world_pristine))
    assert end == dt.datetime(AS_OF.year, AS_OF.month, AS_OF.day, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert bench_partition(loop_spec("H"), end) == "2026-11-20"
    assert bench_partition(loop_spec("A"), end) == "2026-11-08"  # 2026-11-21 is a Saturday
    assert bench_partition(loop_spec("J"), end) == "2026-10-01"
    assert bench_partition(loop_spec("H"), None) is None  # no truth: the orchestrator's default


def test_peak_rss_is_this_process():
    assert peak_rss_mb() >= rss_mb() > 10


def test_cold_and_warm_runs_in_fresh_processes(small_world_pristine, tmp_path):
    lines: list[str] = []
    result = run_loops_benchmark(str(small_world_pristine), ["F"], str(tmp_path), say=lines.append, repeats=1)
    [row] = result["loops"]
    assert row["status"] == "succeeded" and row["partition_key"] == "2026-11-08"
    assert [r["phase"] for r in row["runs"]] == ["cold", "warm"]
    for run in row["runs"]:
        assert 0 < run["run_cpu_s"] < run["process_cpu_s"]  # imports are outside the run, inside the process
        assert run["peak_rss_mb"] >= run["base_rss_mb"] > 50
    assert row["monthly_cpu_s_warm"] == pytest.approx(row["warm_median"]["run_cpu_s"] * 4.35, abs=0.01)
    assert result["monthly_totals"]["monthly_cpu_min_warm"] == pytest.approx(row["monthly_cpu_s_warm"] / 60, abs=1e-3)
    assert result["monthly_target_met_warm"] is True
    saved = json.loads((tmp_path / JSON_NAME).read_text())
    assert saved["loops"][0]["loop_id"] == "loop_f_channel_roi"
    assert "| F | weekly | 2026-11-08 |" in (tmp_path / MD_NAME).read_text()
    assert (tmp_path / PNG_NAME).stat().st_size > 10_000
    assert any("CPU-min warm" in line for line in lines)
    # The report says which code measured on which world, so a figure cannot outlive its commit unseen.
    assert saved["code"]["package_version"] and saved["world"]["scale"] == "small" and saved["world"]["warnings"] == []
    assert "Measured by autonomath-pipelines" in (tmp_path / MD_NAME).read_text()


def test_repeats_must_be_positive(small_world_pristine, tmp_path):
    with pytest.raises(ValueError, match="repeats"):
        run_loops_benchmark(str(small_world_pristine), ["F"], str(tmp_path), repeats=0)


def test_a_world_built_by_this_code_with_statistics_has_no_warning(small_world):
    world = world_provenance(small_world)
    assert world["statistics"] == {"sqlite_stat1": True, "sqlite_stat4": True}
    assert (world["scale"], world["seed"], world["as_of"]) == ("small", 7, AS_OF.isoformat())
    assert world["built_by"]["package_version"] == code_provenance()["package_version"]
    assert world["warnings"] == []


def _rewrite_truth(db, change):
    truth = json.loads(truth_path(db).read_text(encoding="utf-8"))
    change(truth)
    truth_path(db).write_text(json.dumps(truth), encoding="utf-8")


def test_a_world_from_other_generator_code_or_an_unrecorded_builder_is_flagged(small_world):
    _rewrite_truth(small_world, lambda t: t["built_by"].update(generator_digest="0" * 64))
    [warning] = world_provenance(small_world)["warnings"]
    assert "other generator code" in warning and "--rebuild" in warning
    _rewrite_truth(small_world, lambda t: t.pop("built_by"))
    [warning] = world_provenance(small_world)["warnings"]
    assert "did not record itself" in warning


def test_a_world_without_statistics_is_flagged(small_world):
    conn = sqlite3.connect(str(small_world))
    conn.execute("DROP TABLE sqlite_stat1")
    conn.execute("DROP TABLE IF EXISTS sqlite_stat4")
    conn.commit()
    conn.close()
    world = world_provenance(small_world)
    assert world["statistics"] == {"sqlite_stat1": False, "sqlite_stat4": False}
    assert [w for w in world["warnings"] if "no ANALYZE statistics" in w]
