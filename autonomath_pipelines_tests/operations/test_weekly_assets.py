"""The weekly digest and scorecard assets on a hand-made database; their job, schedule and the sensor's shape."""

import dagster as dg
import pandas as pd
import pytest

from autonomath_pipelines.loops import LOOP_DEFINITIONS
from autonomath_pipelines.operations.digest import (
    self_improvement_digest,
    self_improvement_weekly_job,
    self_improvement_weekly_schedule,
)
from autonomath_pipelines.operations.failures import loop_failure_sensor
from autonomath_pipelines.operations.scorecard import loop_scorecard
from autonomath_pipelines.resources import AutonomathDatabase, LoopSettings
from autonomath_pipelines.resources.io_manager import PartitionedParquetIOManager
from autonomath_pipelines_tests.operations.history_world import make_db

#: Sunday 2026-11-08 .. Saturday 2026-11-14 JST = [2026-11-07T15:00Z, 2026-11-14T15:00Z).
WEEK = "2026-11-08"
A, E = LOOP_DEFINITIONS[0].spec.loop_id, LOOP_DEFINITIONS[4].spec.loop_id


@pytest.fixture
def week_db(tmp_path):
    guard_before = [("2026-11-0%dT03:00:00Z" % d, "架空の補助金 申請") for d in (1, 3, 5, 8)]
    guard_after = [("2026-11-10T03:00:00Z", "架空の補助金　申請"), ("2026-11-11T03:00:00Z", "架空の補助金 申請")]
    unrelated = [("2026-11-04T03:00:00Z", "東京都創業助成金")] * 3
    # JST 2026-11-13, the day after cache day 2026-11-12: 3 of 4 requests are cached.
    next_day = [
        ("2026-11-12T16:00:00Z", "補助金 東京"),
        ("2026-11-13T01:00:00Z", "補助金　東京"),
        ("2026-11-13T02:00:00Z", "ＩＴ導入補助金"),
        ("2026-11-13T14:59:59Z", "創業"),
    ]
    return make_db(
        tmp_path / "autonomath.db",
        audit=[
            ("2026-11-09T00:00:00Z", "approve", A, "A:1", "2026-11-08T00:00:00Z", None),
            ("2026-11-09T12:00:00Z", "reject", A, "A:2", "2026-11-08T00:00:00Z", None),
            ("2026-11-10T00:00:00Z", "promote", A, "A:1", "2026-11-08T00:00:00Z", 1),
            ("2026-11-10T00:00:00Z", "approve", E, "E:3", "2026-11-09T00:00:00Z", None),
            ("2026-11-11T00:00:00Z", "promote", E, "E:3", "2026-11-09T00:00:00Z", 2),
            ("2026-11-12T00:00:00Z", "rollback", E, "E:3", None, 2),
        ],
        promotions=[
            (1, "2026-11-10T00:00:00Z", A, "applied", ["架空の補助金"]),
            (2, "2026-11-11T00:00:00Z", E, "rolled_back", ["x"]),
        ],
        queries=guard_before + guard_after + unrelated + next_day,
        feedback=[
            ("2026-11-05T04:00:00Z", "架空の補助金 申請", 1),
            ("2026-11-06T04:00:00Z", "架空の補助金", 1),
            ("2026-11-11T04:00:00Z", "架空の補助金 申請", 0),
        ],
        cache=[
            ("2026-11-12", "補助金 東京"),
            ("2026-11-12", "IT導入補助金"),
            ("2026-11-14", "創業"),
        ],  # its next day is outside the week
    )


def materialize(asset, db, tmp_path) -> dg.ExecuteInProcessResult:
    with dg.instance_for_test() as instance:
        return dg.materialize(
            [asset],
            instance=instance,
            partition_key=WEEK,
            resources={
                "autonomath_db": AutonomathDatabase(path=str(db)),
                "loop_settings": LoopSettings(reports_dir=str(tmp_path / "reports")),
                "io_manager": PartitionedParquetIOManager(base_dir=str(tmp_path / "parquet")),
            },
        )


def metadata_of(result: dg.ExecuteInProcessResult) -> dict:
    [event] = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_scorecard_asset_frame_metadata_and_effects(week_db, tmp_path):
    result = materialize(loop_scorecard, week_db, tmp_path)
    assert result.success
    frame = pd.read_parquet(tmp_path / "parquet" / "loop_scorecard" / f"{WEEK}.parquet")
    assert list(frame["letter"]) == list("ABCDEFGHIJ")
    metadata = metadata_of(result)
    assert metadata["dagster/row_count"] == 10
    assert (metadata["A_approved"], metadata["A_rejected"], metadata["A_promoted"]) == (1, 1, 1)
    assert metadata["A_acceptance_rate"] == pytest.approx(0.5)
    assert metadata["A_median_review_delay_h"] == pytest.approx(30.0)  # 24 h and 36 h
    assert (metadata["E_promoted"], metadata["E_rolled_back"]) == (1, 1)
    assert "B_acceptance_rate" not in metadata and "A_cost_share_of_ceiling" not in metadata
    # Guard effect of promotion 1: 2 wrong of 4 matching queries before, 0 of 2 after.
    assert (metadata["A_guard_promotions"], metadata["A_guard_promotions_measured"]) == (1, 1)
    assert (metadata["A_guard_queries_before"], metadata["A_guard_wrong_before"]) == (4, 2)
    assert (metadata["A_guard_queries_after"], metadata["A_guard_wrong_after"]) == (2, 0)
    assert (metadata["A_guard_rate_before"], metadata["A_guard_rate_after"]) == (0.5, 0.0)
    assert (metadata["H_cache_next_day_requests"], metadata["H_cache_next_day_served"]) == (4, 3)
    assert metadata["H_cache_next_day_share"] == pytest.approx(0.75)
    markdown = metadata["scorecard"]
    assert "| A " in markdown and "0.500 (2/4) → 0.000 (0/2)" in markdown
    assert "cache of 2026-11-12 served 3/4 requests of 2026-11-13 (75.0%)" in markdown


def test_scorecard_asset_says_na_without_data_after_a_promotion(tmp_path):
    db = make_db(
        tmp_path / "late.db",
        promotions=[(1, "2026-11-14T14:00:00Z", A, "applied", ["架空の補助金"])],
        queries=[("2026-11-10T00:00:00Z", "架空の補助金")],
    )
    metadata = metadata_of(materialize(loop_scorecard, db, tmp_path))
    assert metadata["A_guard_promotions"] == 1 and metadata["A_guard_promotions_measured"] == 0
    assert "A_guard_rate_after" not in metadata and "H_cache_next_day_share" not in metadata
    assert "n/a — no matching queries after the promotion yet" in metadata["scorecard"]


def test_digest_asset_writes_the_week_and_reports_numbers(week_db, tmp_path):
    result = materialize(self_improvement_digest, week_db, tmp_path)
    assert result.success
    metadata = metadata_of(result)
    line = "Self-improvement: 0/0 loops succeeded last 7 days, 0 candidates proposed, 1 promoted."
    assert metadata["digest_line"] == line
    assert (metadata["loops_ran"], metadata["candidates_promoted"], metadata["consecutive_failure_loops"]) == (0, 1, 0)
    text = (tmp_path / "reports" / "digests" / f"{WEEK}.md").read_text(encoding="utf-8")
    assert text == metadata["digest"]
    assert f"**{line}**" in text and "Window: 2026-11-08 00:00 – 2026-11-15 00:00 JST" in text
    assert "- Did not run in the last 7 days: A loop_a_hallucination_guard" in text


def test_weekly_job_schedule_and_failure_sensor_ship_stopped():
    defs = dg.Definitions(
        assets=[self_improvement_digest, loop_scorecard],
        jobs=[self_improvement_weekly_job],
        schedules=[self_improvement_weekly_schedule],
        resources={"autonomath_db": AutonomathDatabase(), "loop_settings": LoopSettings()},
    )
    schedule = defs.resolve_schedule_def(self_improvement_weekly_schedule.name)
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 8 * * 1", "Asia/Tokyo")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    job = defs.resolve_job_def(self_improvement_weekly_job.name)
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {
        "self_improvement_digest",
        "loop_scorecard",
    }
    assert loop_failure_sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert loop_failure_sensor.required_resource_keys == {"loop_settings"}
    assert {self_improvement_digest.group_names_by_key[k] for k in self_improvement_digest.keys} == {"operations"}
