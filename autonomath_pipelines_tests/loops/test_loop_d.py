"""Loop D end to end on the small demo world, through Dagster."""

import dataclasses
import json
import shutil

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.demo import load_truth
from autonomath_pipelines.lib.calibration import COEF_KEYS, candidate_gates
from autonomath_pipelines.loops.common import source_specs
from autonomath_pipelines.loops.loop_d_forecast_accuracy import LOOP
from autonomath_pipelines.resources import AutonomathDatabase
from autonomath_pipelines_tests.loops.harness import (
    check_outcomes,
    loop_resources,
    materialized,
    metadata,
    run_loop,
    sha256,
)

#: The last complete month of the small world (logs end 2026-11-21 JST).
LAST_MONTH = "2026-10-01"


def calibration_in_db(db) -> pd.DataFrame:
    return AutonomathDatabase(path=str(db)).read_frame(
        "SELECT * FROM forecast_calibration ORDER BY partition_key, program_id"
    )


def resolved_programs(db, end_utc: str) -> set[str]:
    frame = AutonomathDatabase(path=str(db)).read_frame(
        "SELECT DISTINCT p.program_id FROM forecast_predictions p JOIN am_application_round r USING (round_id) "
        "WHERE r.status = 'resolved' AND r.resolved_at < ?",
        (end_utc,),
    )
    return set(frame["program_id"])


def test_dry_run_writes_nothing_and_proposes_one_row_per_program(small_world, tmp_path):
    before = sha256(small_world)
    result = run_loop(LOOP, small_world, tmp_path, LAST_MONTH)
    assert result.success
    assert sha256(small_world) == before
    candidates = result.output_for_node("forecast_accuracy_candidates")
    assert set(candidates["program_id"]) == resolved_programs(small_world, "2026-10-31T15:00:00Z")
    assert not candidates["program_id"].duplicated().any()
    assert all(check_outcomes(result).values()) and len(check_outcomes(result)) == 4
    assert metadata(result, "forecast_calibration_published")["rows_would_write"] == len(candidates)
    assert metadata(result, "forecast_accuracy_snapshot")["window_end_utc"] == "2026-10-31T15:00:00Z"
    # Nothing resolved after the window end is used.
    snapshot = result.output_for_node("forecast_accuracy_snapshot")
    assert (snapshot["resolved_at"] < "2026-10-31T15:00:00Z").all()
    assert_recovers_planted_biases(small_world, result)


def assert_recovers_planted_biases(small_world, result):
    truth = load_truth(small_world)
    candidates = result.output_for_node("forecast_accuracy_candidates").set_index("program_id")
    planted = pd.Series(truth["forecast_bias_days"]).reindex(candidates.index)
    assert planted.notna().all()
    assert np.corrcoef(candidates["bias_days"], planted)[0, 1] > 0.7
    # Shrinkage beats each program's raw mean at estimating its planted bias...
    rmse_shrunk = float(np.sqrt(((candidates["bias_days"] - planted) ** 2).mean()))
    rmse_unpooled = float(np.sqrt(((candidates["mean_error_days"] - planted) ** 2).mean()))
    assert rmse_shrunk < rmse_unpooled
    # ...and the pooled parameters are close to the world's (μ 5, τ 7, noise 10; ± rounding).
    [pooled_mean] = set(candidates["pooled_mean"])
    assert pooled_mean == pytest.approx(truth["pooled_bias_mean"], abs=2.5)
    assert np.sqrt(candidates["sigma2"].iloc[0]) == pytest.approx(truth["forecast_noise_sd_days"], rel=0.2)
    # Where no round resolved after the window end, the per-program means are the world's own.
    observed = pd.DataFrame(truth["forecast_observed"]).T.reindex(candidates.index)
    same = observed["n"] == candidates["n"]
    assert same.sum() > len(candidates) / 2
    assert np.allclose(
        candidates.loc[same, "mean_error_days"], observed.loc[same, "mean_error_days"].astype(float), atol=1e-3
    )
    # Held-out later rounds: calibrated forecasts beat raw ones and unpooled means.
    stats = metadata(result, "forecast_accuracy_candidates")
    assert stats["holdout_ratio_vs_raw"] < 0.9
    assert stats["holdout_ratio_vs_unpooled"] < 1.0


def source_rows(db) -> tuple[list, list]:
    conn = sqlite3.connect(str(db))
    try:
        return (
            conn.execute("SELECT * FROM forecast_predictions ORDER BY prediction_id").fetchall(),
            conn.execute("SELECT * FROM am_application_round ORDER BY round_id").fetchall(),
        )
    finally:
        conn.close()


def test_execute_writes_one_pending_row_per_program_and_rerun_is_idempotent(small_world, tmp_path):
    sources_before = source_rows(small_world)
    result = run_loop(LOOP, small_world, tmp_path, LAST_MONTH, execute=True)
    assert result.success
    rows = calibration_in_db(small_world)
    assert len(rows) == metadata(result, "forecast_accuracy_candidates")["dagster/row_count"] > 0
    assert set(rows["program_id"]) == resolved_programs(small_world, "2026-10-31T15:00:00Z")
    assert set(rows["status"]) == {"pending_review"}
    assert set(rows["partition_key"]) == {LAST_MONTH} and set(rows["run_id"]) == {result.run_id}
    assert set(rows["loop_id"]) == {"loop_d_forecast_accuracy"}
    coef = json.loads(rows["coef_json"].iloc[0])
    assert set(coef) == set(COEF_KEYS) and 0.0 <= coef["weight"] <= 1.0
    evidence = json.loads(rows["evidence_json"].iloc[0])
    assert {"predictions", "rounds", "window_end_utc"} <= set(evidence)
    # Writes no predictions and touches no round.
    assert source_rows(small_world) == sources_before
    # Re-running the month rewrites the same rows and keeps the operator's review decisions.
    first = rows
    conn = sqlite3.connect(str(small_world))
    conn.execute("UPDATE forecast_calibration SET status = 'approved' WHERE program_id = ?", (first["program_id"][0],))
    conn.commit()
    conn.close()
    assert run_loop(LOOP, small_world, tmp_path, LAST_MONTH, execute=True).success
    second = calibration_in_db(small_world)
    assert list(second["program_id"]) == list(first["program_id"])
    assert list(second["coef_json"]) == list(first["coef_json"])
    assert second.set_index("program_id").loc[first["program_id"][0], "status"] == "approved"


def test_two_month_backfill_one_after_another_and_as_one_run(small_world, tmp_path):
    ranged_world = tmp_path / "ranged.db"
    shutil.copyfile(small_world, ranged_world)
    for month in ("2026-09-01", "2026-10-01"):
        assert run_loop(LOOP, small_world, tmp_path / "seq", month, execute=True).success
    rows = calibration_in_db(small_world)
    by_month = {k: set(g["program_id"]) for k, g in rows.groupby("partition_key")}
    assert by_month == {
        "2026-09-01": resolved_programs(small_world, "2026-09-30T15:00:00Z"),
        "2026-10-01": resolved_programs(small_world, "2026-10-31T15:00:00Z"),
    }
    assert by_month["2026-09-01"] < by_month["2026-10-01"]

    # The same range as one run (single-run backfill policy).
    result = dg.materialize(
        [*source_specs(), *LOOP.assets],
        selection=LOOP.assets,
        tags={"dagster/asset_partition_range_start": "2026-09-01", "dagster/asset_partition_range_end": "2026-10-01"},
        resources=loop_resources(ranged_world, tmp_path / "range", execute=True, loop_id=LOOP.spec.loop_id),
        raise_on_error=False,
    )
    assert result.success and all(check_outcomes(result).values())
    ranged = calibration_in_db(ranged_world)
    # Each partition of the range was computed with its own window end: the same coefficients.
    key = ["partition_key", "program_id", "coef_json"]
    assert ranged[key].values.tolist() == rows[key].values.tolist()
    # The IO manager split the range's frames into one file per partition.
    files = sorted(p.name for p in (tmp_path / "range" / "parquet" / "forecast_accuracy_candidates").glob("*.parquet"))
    assert files == ["2026-09-01.parquet", "2026-10-01.parquet"]


def test_no_resolved_forecasts_is_empty_not_an_error(small_world, tmp_path):
    conn = sqlite3.connect(str(small_world))
    conn.execute("DELETE FROM forecast_predictions")
    conn.commit()
    conn.close()
    result = run_loop(LOOP, small_world, tmp_path, LAST_MONTH, execute=True)
    assert result.success
    assert metadata(result, "forecast_accuracy_snapshot")["dagster/row_count"] == 0
    assert metadata(result, "forecast_calibration_published")["rows_written"] == 0


def test_gates_reject_bad_coefficients():
    good = {
        "bias_days": 1.0,
        "weight": 0.5,
        "n": 3,
        "mean_error_days": 2.0,
        "pooled_mean": 0.0,
        "tau2": 1.0,
        "sigma2": 1.0,
    }
    frame = pd.DataFrame(
        {
            "partition_key": ["2026-10-01"] * 3,
            "program_id": ["A", "B", "B"],
            "status": ["pending_review"] * 3,
            "coef_json": [
                json.dumps(good),
                json.dumps({**good, "weight": 1.5}),
                json.dumps({**good, "tau2": float("nan")}),
            ],
        }
    )
    outcomes = {g.name: g.evaluate(frame).passed for g in candidate_gates({"2026-10-01": {"A", "B", "C"}})}
    assert outcomes == {
        "coefficients_finite": False,
        "weights_in_unit_interval": False,
        "one_row_per_program": False,
        "all_pending_review": True,
    }


def test_a_failing_gate_blocks_publishing(small_world, tmp_path, monkeypatch):
    from autonomath_pipelines.lib import calibration, shrinkage

    def broken_fit(program_ids, errors):
        fit = shrinkage.fit_shrinkage(program_ids, errors)
        return dataclasses.replace(fit, programs=fit.programs.assign(weight=1.5))

    monkeypatch.setattr(calibration, "fit_shrinkage", broken_fit)
    before = sha256(small_world)
    result = run_loop(LOOP, small_world, tmp_path, LAST_MONTH, execute=True)
    assert not result.success
    assert check_outcomes(result)["weights_in_unit_interval"] is False
    assert "forecast_calibration_published" not in materialized(result)
    assert sha256(small_world) == before
