"""The Dagster code location: it loads, the graph has the intended lineage, schedules ship STOPPED."""

import datetime as dt
import subprocess
import sys
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from autonomath_pipelines.catalog import LOOP_SPECS
from autonomath_pipelines.definitions import defs
from autonomath_pipelines.loops import LOOP_DEFINITIONS

TOKYO = ZoneInfo("Asia/Tokyo")


def graph():
    return defs.resolve_asset_graph()


def test_definitions_load_and_validate():
    dg.Definitions.validate_loadable(defs)


def test_every_source_table_is_an_external_asset_in_group_sources():
    for key in ["query_log", "programs", "programs_fts", "error_log"]:
        node = graph().get(dg.AssetKey(key))
        assert not node.is_materializable and node.group_name == "sources" and "sqlite" in node.kinds


def test_loop_h_lineage_runs_from_query_log_to_published_cache():
    g = graph()
    assert dg.AssetKey("query_log") in g.get(dg.AssetKey("cache_warming_snapshot")).parent_keys
    chain = ["cache_warming_snapshot", "cache_warming_zipf_head", "cache_warming_candidates", "query_cache_published"]
    for parent, child in zip(chain, chain[1:]):
        assert dg.AssetKey(parent) in g.get(dg.AssetKey(child)).parent_keys
    for name in chain:
        node = g.get(dg.AssetKey(name))
        assert node.group_name == "loop_h_cache_warming" and node.owners and node.kinds
        assert node.description, f"{name} needs a docstring: it is the UI description"


def test_blocking_gates_guard_the_step_before_publish():
    checks = {
        key.name: spec
        for key, spec in ((k, graph().get_check_spec(k)) for k in graph().asset_check_keys)
        if key.asset_key == dg.AssetKey("cache_warming_candidates")
    }
    assert set(checks) == {
        "rows_within_cap",
        "payloads_valid",
        "ttl_in_future",
        "cache_keys_sound",
        "no_empty_payload_for_answered_query",
        "top1_agrees_with_service",
    }
    assert all(spec.blocking for spec in checks.values())


def test_partitions_are_in_tokyo_time():
    partitions = graph().get(dg.AssetKey("cache_warming_snapshot")).partitions_def
    assert partitions.timezone == "Asia/Tokyo" and partitions.cron_schedule == "0 0 * * *"


@pytest.mark.parametrize("loop", LOOP_DEFINITIONS, ids=lambda loop: loop.spec.loop_id)
def test_every_schedule_ships_stopped_at_its_catalog_time(loop):
    schedule = defs.resolve_schedule_def(loop.spec.schedule_name)
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.execution_timezone == "Asia/Tokyo"
    minute, hour = schedule.cron_schedule.split()[:2]
    assert (int(hour), int(minute)) == (loop.spec.hour, loop.spec.minute)


def test_loop_h_schedule_fires_at_0330_jst_for_the_previous_day():
    schedule = defs.resolve_schedule_def("loop_h_cache_warming_schedule")
    assert schedule.cron_schedule == "30 3 * * *"
    tick = dt.datetime(2026, 11, 21, 3, 30, tzinfo=TOKYO)
    # No instance: a schedule context bound to a temporary instance re-enters it and never exits,
    # leaving Dagster's defs-state storage pointing at a disposed instance for later tests.
    requests = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=tick)).run_requests
    assert [r.partition_key for r in requests] == ["2026-11-20"]


def test_just_before_midnight_utc_still_targets_the_jst_day():
    # 03:30 JST is 18:30 UTC of the previous day: the partition must be the JST calendar day.
    schedule = defs.resolve_schedule_def("loop_h_cache_warming_schedule")
    tick = dt.datetime(2026, 11, 20, 18, 30, tzinfo=dt.timezone.utc)
    requests = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=tick)).run_requests
    assert [r.partition_key for r in requests] == ["2026-11-20"]


def test_catalog_has_the_ten_loops_of_the_design():
    assert [loop.letter for loop in LOOP_SPECS] == list("ABCDEFGHIJ")
    h = next(loop for loop in LOOP_SPECS if loop.letter == "H")
    assert (h.loop_id, h.cadence, h.at, h.cost_ceiling_cpu_min) == ("loop_h_cache_warming", "daily", "03:30", 10)


def test_db_writes_share_one_pool():
    published = graph().get(dg.AssetKey("query_cache_published"))
    assert published.pools == {"autonomath_db_write"}


def test_dagster_cli_validates_the_workspace(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text((repo / "dagster.yaml").read_text())
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "All code locations passed validation" in done.stderr + done.stdout


@pytest.mark.parametrize("loop", LOOP_DEFINITIONS, ids=lambda loop: loop.spec.loop_id)
def test_every_schedule_targets_the_last_complete_partition(loop):
    from dagster._utils.schedules import cron_string_iterator

    schedule = defs.resolve_schedule_def(loop.spec.schedule_name)
    partitions = graph().get(loop.snapshot).partitions_def
    start = dt.datetime(2026, 11, 22, tzinfo=TOKYO).timestamp()
    tick = next(cron_string_iterator(start, schedule.cron_schedule, "Asia/Tokyo"))
    assert (tick.hour, tick.minute) == (loop.spec.hour, loop.spec.minute)
    # The repository resolves the partition of a plain schedule's run request (loops A and I).
    context = dg.build_schedule_context(scheduled_execution_time=tick, repository_def=defs.get_repository_def())
    requests = schedule.evaluate_tick(context).run_requests
    # The last complete partition: the one just before the partition the tick falls in.
    current = partitions.time_window_for_partition_key(partitions.get_partition_key_for_timestamp(tick.timestamp()))
    expected = partitions.get_partition_key_for_timestamp(current.start.timestamp() - 1)
    assert [r.partition_key for r in requests] == [expected]


@pytest.mark.parametrize("loop_id", ["loop_a_hallucination_guard", "loop_i_doc_freshness"])
def test_schedules_of_loops_with_a_week_in_progress_target_the_last_complete_week(loop_id):
    # Their partitions include the week in progress; the schedule must not run on it. The tick
    # is given in UTC on a Saturday that is already Sunday in Tokyo: the JST week has just ended.
    schedule = defs.resolve_schedule_def(f"{loop_id}_schedule")
    partitions = graph().get(next(d for d in LOOP_DEFINITIONS if d.spec.loop_id == loop_id).snapshot).partitions_def
    assert partitions.end_offset == 1
    repository = defs.get_repository_def()
    for tick, expected in [
        (dt.datetime(2026, 11, 21, 14, 59, tzinfo=dt.timezone.utc), "2026-11-08"),
        (dt.datetime(2026, 11, 21, 15, 0, tzinfo=dt.timezone.utc), "2026-11-15"),
        (dt.datetime(2026, 11, 24, 2, 0, tzinfo=TOKYO), "2026-11-15"),
    ]:
        context = dg.build_schedule_context(scheduled_execution_time=tick, repository_def=repository)
        assert [(r.partition_key, r.run_key) for r in schedule.evaluate_tick(context).run_requests] == [
            (expected, expected)
        ]
    before_any = dg.build_schedule_context(
        scheduled_execution_time=dt.datetime(2025, 1, 3, tzinfo=TOKYO), repository_def=repository
    )
    assert "no weekly partition" in schedule.evaluate_tick(before_any).skip_message


def test_the_operations_group_is_in_the_code_location_and_ships_dark():
    """Review, digest and scorecard from the UI; their schedule and every sensor STOPPED."""
    graph = defs.resolve_asset_graph()
    operations = {
        key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).group_name == "operations"
    }
    assert operations == {"review_queue", "self_improvement_digest", "loop_scorecard"}
    assert defs.resolve_job_def("review") is not None
    schedule = defs.resolve_schedule_def("self_improvement_weekly_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert all(s.default_status == dg.DefaultSensorStatus.STOPPED for s in defs.sensors)


def test_every_asset_is_described_grouped_kinded_and_owned():
    """What the UI shows for each asset: a description (the docstring), a group named after a loop,
    `sources` or `operations`, at least one kind, and an owner."""
    from autonomath_pipelines.catalog import LOOP_SPECS

    groups = {spec.group_name for spec in LOOP_SPECS} | {"sources", "operations"}
    graph = defs.resolve_asset_graph()
    problems = []
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_user_string()
        if not (node.description or "").strip():
            problems.append(f"{name}: no description")
        if node.group_name not in groups:
            problems.append(f"{name}: group {node.group_name!r} is not a loop, 'sources' or 'operations'")
        if not node.kinds:
            problems.append(f"{name}: no kinds")
        if not node.owners:
            problems.append(f"{name}: no owner")
    assert problems == []
    assert len(list(graph.get_all_asset_keys())) > 40


def test_loading_the_definitions_leaves_scikit_learn_and_scipy_stats_unimported():
    """Every loop run's process loads the definitions; scikit-learn and SciPy's statistics cost ~4 CPU s
    to import and only the steps that cluster or test links use them, so they load there."""
    probe = (
        "import sys, autonomath_pipelines.definitions as d; d.defs.resolve_asset_graph(); "
        "print(sorted(m for m in ('sklearn', 'scipy.stats') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
