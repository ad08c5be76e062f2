"""Nothing lost (issue 14, defects 2 and 3): an empty or abnormally small window publishes nothing
and fails a named check, a dry run reports exactly what the execute does, and an older partition
(a backfill) never overwrites the live cache of a newer one.
"""

from __future__ import annotations

import dagster as dg
import pytest

from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.loops.common import WINDOW_GATE, source_specs
from autonomath_pipelines.loops.loop_c_personalized_cache import LOOP as LOOP_C
from autonomath_pipelines.loops.loop_e_alias_expansion import LOOP as LOOP_E
from autonomath_pipelines.loops.loop_h_cache_warming import LOOP as LOOP_H
from autonomath_pipelines.loops.loop_j_gold_expansion import LOOP as LOOP_J
from autonomath_pipelines_tests.conftest import LAST_DAY
from autonomath_pipelines_tests.hardening.drivers import rows
from autonomath_pipelines_tests.loops.harness import check_outcomes, loop_resources, metadata, run_loops_at

# JST day 2026-11-20 in UTC.
DAY_START, DAY_END = "2026-11-19T15:00:00Z", "2026-11-20T15:00:00Z"
LAST_WEEK = "2026-11-15"


def run(loop, db, tmp, partition, *, execute, instance=None):
    return dg.materialize(
        [*source_specs(), *loop.assets],
        selection=loop.assets,
        partition_key=partition,
        resources=loop_resources(db, tmp / "storage", execute=execute, loop_id=loop.spec.loop_id),
        raise_on_error=False,
        instance=instance,
    )


def drop_query_log(db, start: str, end: str, keep_every: int | None = None) -> int:
    """Delete the window's query_log rows (all, or all but every ``keep_every``-th): late ingestion."""
    conn = sqlite3.connect(str(db))
    with conn:
        keep = f" AND id % {keep_every} != 0" if keep_every else ""
        deleted = conn.execute(f"DELETE FROM query_log WHERE ts >= ? AND ts < ?{keep}", (start, end)).rowcount
    conn.close()
    return deleted


def window_check(result) -> tuple[bool, str]:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == WINDOW_GATE.name]
    return evaluation.passed, evaluation.description


def cache(db):
    return rows(db, "query_cache")


# ------------------------------------------------------------------------------ defect 2: empty windows


def test_an_empty_day_of_query_log_fails_the_window_check_and_keeps_the_cache(small_world, tmp_path):
    assert run(LOOP_H, small_world, tmp_path, LAST_DAY, execute=True).success
    before = cache(small_world)
    assert len(before) > 150  # the day's head, less what the service answers otherwise
    assert drop_query_log(small_world, DAY_START, DAY_END) > 0

    for execute in (False, True):
        result = run(LOOP_H, small_world, tmp_path, LAST_DAY, execute=execute)
        assert not result.success  # the old code succeeded and deleted 200
        passed, description = window_check(result)
        assert not passed and "the window is empty" in description and "cache_warming_snapshot" in description
        published = metadata(result, "query_cache_published")
        assert published["published"] is False and published["rows_written"] == 0
        assert cache(small_world) == before


@pytest.mark.parametrize(
    "loop, partition", [(LOOP_E, "2026-11-08"), (LOOP_J, "2026-10-01")], ids=["E-alias-candidates", "J-gold-file"]
)
def test_other_loops_publish_nothing_from_an_empty_window(small_world, tmp_path, loop, partition):
    conn = sqlite3.connect(str(small_world))
    with conn:
        conn.execute("DELETE FROM query_log")
    conn.close()
    result = run(loop, small_world, tmp_path, partition, execute=True)
    assert not result.success
    assert check_outcomes(result)[WINDOW_GATE.name] is False
    assert metadata(result, loop.published.to_user_string())["rows_written"] == 0


def test_an_abnormally_small_window_against_the_loops_own_history_fails(small_world, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    for day in ("2026-11-17", "2026-11-18", "2026-11-19"):
        assert run(LOOP_H, small_world, tmp_path, day, execute=False, instance=instance).success
    normal = run(LOOP_H, small_world, tmp_path, LAST_DAY, execute=False, instance=instance)
    assert normal.success and window_check(normal)[0]

    drop_query_log(small_world, DAY_START, DAY_END, keep_every=20)  # 5 % of the day arrived
    result = run(LOOP_H, small_world, tmp_path, LAST_DAY, execute=True, instance=instance)
    assert not result.success
    passed, description = window_check(result)
    assert not passed and "abnormally small" in description and "previous 3 windows" in description
    assert cache(small_world) == []


def test_the_dry_run_reports_exactly_what_the_execute_does(small_world, tmp_path):
    assert run(LOOP_H, small_world, tmp_path, LAST_DAY, execute=True).success  # the re-run replaces these
    first = cache(small_world)
    dry = metadata(run(LOOP_H, small_world, tmp_path, LAST_DAY, execute=False), "query_cache_published")
    wet = metadata(run(LOOP_H, small_world, tmp_path, LAST_DAY, execute=True), "query_cache_published")
    assert dry["rows_would_delete"] == wet["rows_deleted"] == len(first) > 0  # the old dry run said 0
    assert (dry["rows_would_insert"], dry["rows_would_update"]) == (wet["rows_inserted"], wet["rows_updated"])
    assert dry["rows_would_write"] == wet["rows_written"] == len(first)


# ----------------------------------------------------------------------------- defect 3: backfills


def test_an_older_partition_never_overwrites_the_live_cache(small_world, tmp_path):
    assert run(LOOP_H, small_world, tmp_path, LAST_DAY, execute=True).success
    live = cache(small_world)
    for day in ("2026-11-18", "2026-11-19"):  # a backfill after today's run
        result = run(LOOP_H, small_world, tmp_path, day, execute=True)
        assert result.success
        published = metadata(result, "query_cache_published")
        assert published["published"] is False and published["rows_written"] == 0
        assert f"partition {day} is older than partition {LAST_DAY}" in published["not_published"]
        assert cache(small_world) == live  # same rows, same TTLs


def test_a_backfill_range_publishes_only_its_latest_partition(small_world, tmp_path):
    report = run_loops_at(
        only=["H"],
        partition="2026-11-18",
        until=LAST_DAY,
        execute=True,
        db_path=str(small_world),
        reports_dir=str(tmp_path / "r"),
        storage_dir=str(tmp_path / "s"),
    )
    executed = [r.actions_executed for r in report.results]
    assert report.ok and executed[:2] == [0, 0] and executed[2] > 150
    refused = report.results[0].asset_metrics["query_cache_published"]
    assert refused["rows_written"] == 0
    live = cache(small_world)
    assert len(live) == executed[2] and {r["partition_key"] for r in live} == {LAST_DAY}  # the old code kept ~600


def test_personalized_cache_refuses_an_older_week(small_world, tmp_path):
    assert run(LOOP_C, small_world, tmp_path, LAST_WEEK, execute=True).success
    live = rows(small_world, "personalized_cache")
    assert live
    result = run(LOOP_C, small_world, tmp_path, "2026-11-08", execute=True)
    assert result.success
    published = metadata(result, "personalized_cache_published")
    assert published["published"] is False and "older than partition 2026-11-15" in published["not_published"]
    assert rows(small_world, "personalized_cache") == live
