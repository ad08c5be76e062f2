"""Data-driven sensors on small hand-made databases: cursors, bursts, complete months, skips."""

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from autonomath_pipelines.contract.schema import create_all
from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.contract.timestamps import utc_now
from autonomath_pipelines.definitions import defs
from autonomath_pipelines.lib.triggers import THRESHOLD_VAR, WINDOW_HOURS_VAR, BurstState
from autonomath_pipelines.loops import LOOP_DEFINITIONS
from autonomath_pipelines.loops.common import in_progress_partition_key, partitions_for
from autonomath_pipelines.operations.sensors import (
    build_month_complete_sensor,
    build_sensors,
    build_source_change_signals_sensor,
    build_wrong_answer_burst_sensor,
)
from autonomath_pipelines.resources import AutonomathDatabase

BY_ID = {loop.spec.loop_id: loop for loop in LOOP_DEFINITIONS}
LOOP_A, LOOP_I = BY_ID["loop_a_hallucination_guard"], BY_ID["loop_i_doc_freshness"]
UTC = dt.timezone.utc
#: Wednesday 2026-11-18 12:00 JST: inside the week that starts on Sunday 2026-11-15.
NOW = dt.datetime(2026, 11, 18, 3, 0, tzinfo=UTC)
WEEK = "2026-11-15"


def fixed(moment: dt.datetime):
    return lambda: moment


@pytest.fixture
def db(tmp_path) -> Path:
    path = tmp_path / "autonomath.db"
    conn = sqlite3.connect(str(path))
    create_all(conn)
    conn.close()
    return path


def insert(db: Path, sql: str, rows) -> None:
    conn = sqlite3.connect(str(db))
    with conn:
        conn.executemany(sql, rows)
    conn.close()


def add_signals(db: Path, *observed_at: str) -> None:
    insert(
        db,
        "INSERT INTO source_change_signals (observed_at, source_url, http_status) VALUES (?, ?, 200)",
        [(ts, f"https://example.go.jp/{i}") for i, ts in enumerate(observed_at)],
    )


def add_feedback(db: Path, *ts: str, wrong: int = 1) -> None:
    insert(
        db,
        "INSERT INTO customer_feedback (ts, api_key, query_text, wrong_answer) VALUES (?, 'k', 'q', ?)",
        [(t, wrong) for t in ts],
    )


def add_queries(db: Path, *ts: str) -> None:
    insert(
        db,
        "INSERT INTO query_log (ts, api_key, session_id, query_text, confidence, result_count, latency_ms, tier) "
        "VALUES (?, 'k', 's', 'q', 0.9, 1, 5.0, 'free')",
        [(t,) for t in ts],
    )


def tick(sensor: dg.SensorDefinition, db: Path, cursor: str | None = None):
    """One evaluation as the daemon runs it: a fresh context, only the saved cursor carries over, and
    the repository resolves (so validates) each requested partition."""
    context = dg.build_sensor_context(
        cursor=cursor, definitions=defs, resources={"autonomath_db": AutonomathDatabase(path=str(db))}
    )
    return sensor.evaluate_tick(context)


def iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def hours_before(hours: float) -> str:
    return iso(NOW - dt.timedelta(hours=hours))


# ----------------------------------------------------------------------------------------- shape


def test_build_sensors_ships_three_stopped_described_sensors_on_the_right_jobs():
    sensors = {s.name: s for s in build_sensors()}
    assert set(sensors) == {"source_change_signals_sensor", "wrong_answer_burst_sensor", "month_complete_sensor"}
    for sensor in sensors.values():
        assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
        assert sensor.description and sensor.minimum_interval_seconds >= 60
        assert sensor.required_resource_keys == {"autonomath_db"}
    assert [t.job_name for t in sensors["source_change_signals_sensor"].targets] == [LOOP_I.spec.job_name]
    assert [t.job_name for t in sensors["wrong_answer_burst_sensor"].targets] == [LOOP_A.spec.job_name]
    assert sorted(t.job_name for t in sensors["month_complete_sensor"].targets) == [
        f"{loop_id}_job"
        for loop_id in (
            "loop_b_testimonial_seo",
            "loop_d_forecast_accuracy",
            "loop_g_invariant_expansion",
            "loop_j_gold_expansion",
        )
    ]
    assert build_sensors([BY_ID["loop_h_cache_warming"]]) == []


def test_the_project_definitions_carry_the_sensors_stopped():
    dg.Definitions.validate_loadable(defs)
    sensors = {s.name: s for s in defs.sensors}
    assert {
        "source_change_signals_sensor",
        "wrong_answer_burst_sensor",
        "month_complete_sensor",
        "loop_failure_sensor",
    } <= set(sensors)
    assert all(s.default_status == dg.DefaultSensorStatus.STOPPED for s in sensors.values())


def test_a_sensor_on_the_week_in_progress_needs_a_loop_that_has_one():
    with pytest.raises(ValueError, match="loop_c_personalized_cache has no in-progress partition"):
        build_source_change_signals_sensor(BY_ID["loop_c_personalized_cache"])


# ------------------------------------------------------------------------------ source change signals


def test_signals_first_tick_starts_at_the_newest_row_without_replaying_history(db):
    sensor = build_source_change_signals_sensor(LOOP_I, clock=fixed(NOW))
    add_signals(db, "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z")
    first = tick(sensor, db)
    assert first.run_requests == [] and first.cursor == "2" and "not replayed" in first.skip_message


def test_signals_are_requested_exactly_once_across_ticks_and_restarts(db):
    sensor = build_source_change_signals_sensor(LOOP_I, clock=fixed(NOW))
    add_signals(db, "2026-11-01T00:00:00Z")
    cursor = tick(sensor, db).cursor
    add_signals(db, "2026-11-17T00:00:00Z", "2026-11-17T01:00:00Z")
    second = tick(sensor, db, cursor)
    [request] = second.run_requests
    assert (request.partition_key, request.run_key) == (WEEK, "source_change_signals:3")  # on the sensor's job
    assert request.tags["autonomath/new_signals"] == "2" and request.tags["autonomath/max_signal_id"] == "3"
    assert second.cursor == "3"
    again = tick(sensor, db, second.cursor)
    assert again.run_requests == [] and again.skip_message == "no source_change_signals after id 3"
    # A late row stamped long ago still arrives after the cursor: it is seen once, by id.
    add_signals(db, "2025-02-01T00:00:00Z")
    late = tick(sensor, db, second.cursor)
    assert [r.tags["autonomath/new_signals"] for r in late.run_requests] == ["1"] and late.cursor == "4"


def test_signals_request_the_week_in_progress_at_the_real_clock(db):
    sensor = build_source_change_signals_sensor(LOOP_I)
    add_signals(db, "2026-11-01T00:00:00Z")
    [request] = tick(sensor, db, "0").run_requests
    current = in_progress_partition_key(LOOP_I.spec, utc_now())
    assert request.partition_key == current
    window = partitions_for(LOOP_I.spec).time_window_for_partition_key(current)
    assert window.start <= utc_now() < window.end


@pytest.mark.parametrize(
    "build, table",
    [
        (lambda: build_source_change_signals_sensor(LOOP_I), "source_change_signals"),
        (lambda: build_wrong_answer_burst_sensor(LOOP_A), "customer_feedback"),
        (lambda: build_month_complete_sensor(LOOP_DEFINITIONS), "query_log"),
    ],
)
def test_missing_table_or_database_is_a_skip_naming_it(tmp_path, build, table):
    empty = tmp_path / "empty.db"
    with sqlite3.connect(str(empty)) as conn:  # a database without the table (a 0-byte file is refused)
        conn.execute("CREATE TABLE t (a)")
    result = tick(build(), empty, None)
    assert result.run_requests == [] and f"missing table {table}" in result.skip_message
    result = tick(build(), tmp_path / "nowhere.db", None)
    assert result.run_requests == [] and "database not found" in result.skip_message


def test_a_malformed_cursor_is_a_skip_not_an_error(db):
    result = tick(build_source_change_signals_sensor(LOOP_I), db, "yesterday")
    assert result.run_requests == [] and "reset the sensor's cursor" in result.skip_message
    result = tick(build_wrong_answer_burst_sensor(LOOP_A), db, "12")
    assert result.run_requests == [] and "not a burst cursor" in result.skip_message
    result = tick(build_month_complete_sensor(LOOP_DEFINITIONS), db, "October")
    assert result.run_requests == [] and "is not a month" in result.skip_message


# --------------------------------------------------------------------------------- wrong-answer burst


def test_burst_fires_at_the_threshold_once_and_again_only_after_threshold_new_reports(db):
    sensor = build_wrong_answer_burst_sensor(LOOP_A, threshold=3, window_hours=24, clock=fixed(NOW))
    add_feedback(db, hours_before(100))
    cursor = tick(sensor, db).cursor
    assert BurstState.from_cursor(cursor).last_id == 1
    add_feedback(db, hours_before(3), hours_before(2))
    add_feedback(db, hours_before(1), hours_before(1), wrong=0)  # not wrong answers: never counted
    below = tick(sensor, db, cursor)
    assert below.run_requests == [] and below.skip_message.startswith("2 of 3 wrong-answer reports")
    add_feedback(db, hours_before(1))
    burst = tick(sensor, db, below.cursor)
    [request] = burst.run_requests
    assert (request.partition_key, request.run_key) == (WEEK, "wrong_answer_burst:6")  # on the sensor's job
    assert request.tags["autonomath/wrong_answer_reports"] == "3"
    assert tick(sensor, db, burst.cursor).run_requests == []
    # Stamped before the request (a straggler of the same burst): no new request.
    add_feedback(db, hours_before(0.5))
    quiet = tick(sensor, db, burst.cursor)
    assert quiet.run_requests == [] and quiet.skip_message.startswith("0 of 3")
    later = build_wrong_answer_burst_sensor(
        LOOP_A, threshold=3, window_hours=24, clock=fixed(NOW + dt.timedelta(hours=2))
    )
    add_feedback(db, iso(NOW + dt.timedelta(minutes=10)), iso(NOW + dt.timedelta(minutes=20)))
    two = tick(later, db, quiet.cursor)
    assert two.run_requests == []
    add_feedback(db, iso(NOW + dt.timedelta(minutes=30)))
    [again] = tick(later, db, two.cursor).run_requests
    assert again.run_key == "wrong_answer_burst:10"


def test_burst_counts_only_reports_stamped_within_the_window(db):
    sensor = build_wrong_answer_burst_sensor(LOOP_A, threshold=2, window_hours=6, clock=fixed(NOW))
    cursor = tick(sensor, db).cursor
    add_feedback(db, hours_before(7), hours_before(30), hours_before(5))  # late arrivals, out of ts order
    result = tick(sensor, db, cursor)
    assert result.run_requests == [] and result.skip_message.startswith("1 of 2 wrong-answer reports in the last 6 h")


def test_burst_settings_come_from_the_environment(db, monkeypatch):
    monkeypatch.setenv(THRESHOLD_VAR, "2")
    monkeypatch.setenv(WINDOW_HOURS_VAR, "12")
    sensor = build_wrong_answer_burst_sensor(LOOP_A, clock=fixed(NOW))
    cursor = tick(sensor, db).cursor
    add_feedback(db, hours_before(1), hours_before(11))
    [request] = tick(sensor, db, cursor).run_requests
    assert request.tags["autonomath/burst_threshold"] == "2" and request.tags["autonomath/burst_window_hours"] == "12"
    overridden = build_wrong_answer_burst_sensor(LOOP_A, threshold=3, clock=fixed(NOW))
    assert tick(overridden, db, cursor).run_requests == []


@pytest.mark.parametrize("name, value", [(THRESHOLD_VAR, "twenty"), (WINDOW_HOURS_VAR, "-4")])
def test_a_misconfigured_variable_is_a_skip_naming_it(db, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    cursor = BurstState(0).to_cursor()
    add_feedback(db, *[hours_before(1)] * 30)
    result = tick(build_wrong_answer_burst_sensor(LOOP_A, clock=fixed(NOW)), db, cursor)
    assert result.run_requests == [] and f"{name}='{value}' is invalid" in result.skip_message
    assert result.cursor == cursor  # nothing was processed


# ------------------------------------------------------------------------------------ complete months

MONTHLY = ["loop_b_testimonial_seo", "loop_d_forecast_accuracy", "loop_g_invariant_expansion", "loop_j_gold_expansion"]


def test_month_sensor_requests_each_monthly_loop_for_the_latest_complete_month(db):
    sensor = build_month_complete_sensor(LOOP_DEFINITIONS, clock=fixed(NOW))
    add_queries(db, "2026-09-10T00:00:00Z", "2026-10-31T14:59:59Z")  # 23:59:59 JST on 31 October
    early = tick(sensor, db)
    assert {r.partition_key for r in early.run_requests} == {"2026-09-01"} and early.cursor == "2026-09-01"
    add_queries(db, "2026-10-31T15:00:00Z")  # midnight JST: October is over
    result = tick(sensor, db, early.cursor)
    assert sorted((r.job_name, r.partition_key, r.run_key) for r in result.run_requests) == [
        (f"{loop_id}_job", "2026-10-01", f"{loop_id}:2026-10-01") for loop_id in MONTHLY
    ]
    assert result.cursor == "2026-10-01"
    again = tick(sensor, db, result.cursor)
    assert again.run_requests == [] and "no newly complete month" in again.skip_message


def test_month_sensor_first_tick_does_not_replay_history_and_catches_up_after_a_pause(db):
    sensor = build_month_complete_sensor(LOOP_DEFINITIONS, clock=fixed(NOW))
    add_queries(db, "2026-11-02T00:00:00Z", "2025-03-01T00:00:00Z")
    first = tick(sensor, db)
    assert {r.partition_key for r in first.run_requests} == {"2026-10-01"} and len(first.run_requests) == 4
    paused = tick(sensor, db, "2026-05-01")
    assert [r.partition_key for r in paused.run_requests][::4] == ["2026-06-01", "2026-07-01", "2026-08-01"]
    assert paused.cursor == "2026-08-01"
    rest = tick(sensor, db, paused.cursor)
    assert sorted({r.partition_key for r in rest.run_requests}) == ["2026-09-01", "2026-10-01"]


def test_month_sensor_on_an_empty_log_skips(db):
    result = tick(build_month_complete_sensor(LOOP_DEFINITIONS, clock=fixed(NOW)), db)
    assert result.run_requests == [] and result.cursor is None
