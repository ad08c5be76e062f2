"""Run history, digest, failure sensor and scorecard over real runs of tiny loop jobs on a test instance."""

import datetime as dt
import json

import dagster as dg
import pytest

from autonomath_pipelines.contract.timestamps import iso_utc
from autonomath_pipelines.loops import LOOP_DEFINITIONS
from autonomath_pipelines.operations.digest import build_digest
from autonomath_pipelines.operations.failures import FAILURE_LOG_NAME, loop_failure_sensor, read_failure_log
from autonomath_pipelines.operations.history import candidate_materializations, loop_runs, proposed_by_loop
from autonomath_pipelines.operations.runs import CPU_SECONDS_TAG
from autonomath_pipelines.operations.scorecard import scorecard_for_window
from autonomath_pipelines.resources import AutonomathDatabase, LoopSettings
from autonomath_pipelines_tests.operations.history_world import LOOP_A, LOOP_B, LOOP_C, make_db, run_tiny_loop

P1, P2 = "2026-10-04", "2026-10-11"
A, B, C = LOOP_A.spec.loop_id, LOOP_B.spec.loop_id, LOOP_C.spec.loop_id


@pytest.fixture(scope="module")
def history():
    """A: three successes (P1 twice); B: success, then two failures; C: failure, success, failure."""
    with dg.instance_for_test() as instance:
        started = dt.datetime.now(dt.timezone.utc)
        runs = {
            "A": [
                run_tiny_loop(instance, LOOP_A, P1, rows=3),
                run_tiny_loop(instance, LOOP_A, P1, rows=5),
                run_tiny_loop(instance, LOOP_A, P2, rows=2),
            ],
            "B": [
                run_tiny_loop(instance, LOOP_B, P1, rows=4),
                run_tiny_loop(instance, LOOP_B, P1, fail=True),
                run_tiny_loop(instance, LOOP_B, P2, fail=True),
            ],
            "C": [
                run_tiny_loop(instance, LOOP_C, P1, fail=True),
                run_tiny_loop(instance, LOOP_C, P1, rows=1),
                run_tiny_loop(instance, LOOP_C, P2, fail=True),
            ],
        }
        # As `autonomath-loops run` does: the first A run has a measured CPU cost.
        instance.add_run_tags(runs["A"][0].run_id, {CPU_SECONDS_TAG: "1.250"})
        yield instance, runs, started, dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)


@pytest.fixture
def reviewed_db(tmp_path):
    """Promotions in the last days: A:1 stands, A:2 was rolled back, B:7 was promoted 8 days ago."""
    now = dt.datetime.now(dt.timezone.utc)
    ago = lambda **kw: iso_utc(now - dt.timedelta(**kw))  # noqa: E731
    return make_db(
        tmp_path / "autonomath.db",
        audit=[
            (ago(days=8), "promote", B, "B:7", ago(days=9), 1),
            (ago(days=2), "approve", A, "A:1", ago(days=3), None),
            (ago(days=1), "promote", A, "A:1", ago(days=3), 2),
            (ago(days=1), "promote", A, "A:2", ago(days=3), 2),
            (ago(hours=1), "rollback", A, "A:2", None, 2),
        ],
    )


def test_loop_runs_in_the_window_with_cost_and_its_source(history):
    instance, runs, started, until = history
    frame = loop_runs(instance, started - dt.timedelta(minutes=1), until)
    assert len(frame) == 9
    assert frame["run_time"].is_monotonic_increasing
    by_id = frame.set_index("run_id")
    first_a = by_id.loc[runs["A"][0].run_id]
    assert (first_a["loop_id"], first_a["partition_key"], first_a["status"]) == (A, P1, "SUCCESS")
    assert (first_a["cost_seconds"], first_a["cost_source"]) == (1.25, "cpu")
    failed_b = by_id.loc[runs["B"][2].run_id]
    assert (failed_b["status"], failed_b["partition_key"], failed_b["cost_source"]) == ("FAILURE", P2, "step_time")
    assert failed_b["step_seconds"] > 0 and failed_b["cost_seconds"] == failed_b["step_seconds"]
    assert loop_runs(instance, until, until + dt.timedelta(days=7)).empty
    assert loop_runs(instance, started - dt.timedelta(days=7), started - dt.timedelta(seconds=1)).empty
    only_c = loop_runs(instance, started - dt.timedelta(minutes=1), until, [LOOP_DEFINITIONS[2]], with_cost=False)
    assert set(only_c["loop_id"]) == {C} and only_c["cost_seconds"].isna().all()


def test_candidates_count_the_latest_materialization_per_partition(history):
    instance, runs, started, until = history
    materializations = candidate_materializations(instance, started - dt.timedelta(minutes=1), until)
    a_rows = materializations[materializations["loop_id"] == A].set_index("partition_key")["row_count"]
    assert a_rows.to_dict() == {P1: 5, P2: 2}  # the re-run of P1 replaced its count
    assert proposed_by_loop(materializations) == {A: 7, B: 4, C: 1}
    assert candidate_materializations(instance, until, until + dt.timedelta(days=1)).empty


def test_digest_line_extra_lines_and_consecutive_failure_warning(history, reviewed_db, tmp_path):
    instance, runs, started, until = history
    digest = build_digest(instance, AutonomathDatabase(path=str(reviewed_db)), until, reports_dir=tmp_path)
    assert digest.line == "Self-improvement: 1/3 loops succeeded last 7 days, 12 candidates proposed, 1 promoted."
    b_last, b_before = runs["B"][2].run_id, runs["B"][1].run_id
    assert digest.lines[1] == (
        f"Latest run did not succeed: B {B} (failure, run {b_last}); C {C} (failure, run {runs['C'][2].run_id})."
    )
    assert digest.lines[2].startswith("Did not run in the last 7 days: D loop_d_forecast_accuracy (monthly day 15")
    # C failed last but succeeded in between: no warning. B's error comes from the run's event log.
    assert digest.warnings == (
        f"WARNING: {B} failed in 2 consecutive runs ({b_last}, {b_before}, "
        "last error: testimonial_seo_candidates: RuntimeError: loop B: source table is empty)",
    )
    assert digest.lines[-1] == digest.warnings[0]


def test_digest_before_the_runs_sees_no_runs_and_later_rollbacks(history, reviewed_db, tmp_path):
    instance, runs, started, until = history
    digest = build_digest(
        instance, AutonomathDatabase(path=str(reviewed_db)), started - dt.timedelta(seconds=1), reports_dir=tmp_path
    )
    # The audit rows are hours old, so A:1 (standing) and A:2 (rolled back) fall in this window too.
    assert digest.line == "Self-improvement: 0/0 loops succeeded last 7 days, 0 candidates proposed, 1 promoted."
    assert digest.warnings == ()


def test_digest_without_review_tables_or_database(history, tmp_path):
    instance, runs, started, until = history
    bare = tmp_path / "bare.db"
    from autonomath_pipelines.contract.sqlite import sqlite3

    with sqlite3.connect(str(bare)) as conn:  # a database without review tables (a 0-byte file is refused)
        conn.execute("CREATE TABLE t (a)")
    assert build_digest(instance, AutonomathDatabase(path=str(bare)), until, reports_dir=tmp_path).notes == ()
    missing = build_digest(instance, AutonomathDatabase(path=str(tmp_path / "nope.db")), until, reports_dir=tmp_path)
    assert missing.candidates_promoted == 0
    assert missing.lines[-1].startswith("Promotions not counted: AutonoMath database not found at")


def test_failure_sensor_records_each_failed_run_once_and_the_digest_quotes_it(history, tmp_path):
    instance, runs, started, until = history
    failed = runs["B"][2]
    settings = LoopSettings(reports_dir=str(tmp_path))
    for _ in range(2):
        context = dg.build_run_status_sensor_context(
            sensor_name="loop_failure_sensor",
            dagster_event=failed.get_run_failure_event(),
            dagster_instance=instance,
            dagster_run=failed.dagster_run,
            resources={"loop_settings": settings},
        )
        loop_failure_sensor(context)
    lines = (tmp_path / FAILURE_LOG_NAME).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["run_id"] == failed.run_id and record["loop_id"] == B and record["partition_key"] == P2
    assert record["error"] == "testimonial_seo_candidates: RuntimeError: loop B: source table is empty"
    assert record["failed_at"].endswith("Z")
    # The digest quotes the log (here edited, to tell it from the event log).
    (tmp_path / FAILURE_LOG_NAME).write_text(json.dumps({**record, "error": "from the log"}) + "\n", encoding="utf-8")
    assert read_failure_log(tmp_path / FAILURE_LOG_NAME)[failed.run_id]["error"] == "from the log"
    digest = build_digest(instance, None, until, reports_dir=tmp_path)
    assert digest.warnings[0].endswith("last error: from the log)")


def test_scorecard_for_the_window(history, reviewed_db):
    instance, runs, started, until = history
    card = scorecard_for_window(
        instance, AutonomathDatabase(path=str(reviewed_db)), started - dt.timedelta(minutes=1), until
    )
    frame = card.frame.set_index("letter")
    assert (frame.loc["A", "proposed"], frame.loc["A", "runs"], frame.loc["A", "failures"]) == (7, 3, 0)
    assert frame.loc["A", "cost_source"] == "mixed"
    assert (frame.loc["B", "runs"], frame.loc["B", "failures"], frame.loc["C", "failures"]) == (3, 2, 2)
    assert frame.loc["D", "runs"] == 0 and frame.loc["D", "cost_source"] is None
    metrics = card.metrics()
    assert metrics["B_failures"] == 2 and metrics["total_runs"] == 9 and metrics["A_guard_promotions"] == 0
