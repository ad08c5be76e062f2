"""`autonomath-loops run`: the report, failure isolation, and one-line usage errors."""

import json

import dagster as dg
import pytest

from autonomath_pipelines.catalog import loop_spec
from autonomath_pipelines.cli import main
from autonomath_pipelines.loops.common import LoopDefinition, partitions_for
from autonomath_pipelines.loops.loop_h_cache_warming import LOOP as LOOP_H
from autonomath_pipelines_tests.conftest import LAST_DAY
from autonomath_pipelines_tests.loops.harness import run_loops_at

SEED_KEYS = {"ts", "dry_run", "loops_total", "loops_succeeded", "loops_failed", "totals", "results"}


def broken_loop() -> LoopDefinition:
    """A loop whose snapshot crashes, standing in for any loop that fails."""
    spec = loop_spec("loop_f_channel_roi")

    @dg.asset(name="channel_roi_snapshot", group_name=spec.group_name, partitions_def=partitions_for(spec))
    def snapshot() -> None:
        raise RuntimeError("billing_events row 17 has amount_jpy 'abc'")

    return LoopDefinition(
        spec=spec, assets=[snapshot], snapshot=snapshot.key, candidates=snapshot.key, published=snapshot.key
    )


def test_run_writes_the_seed_report(small_world, tmp_path):
    report = run_loops_at(
        only=["H"],
        db_path=str(small_world),
        partition=LAST_DAY,
        reports_dir=str(tmp_path / "reports"),
        storage_dir=str(tmp_path / "storage"),
    )
    data = json.loads(open(report.report_path, encoding="utf-8").read())
    assert SEED_KEYS <= set(data)
    assert data["dry_run"] is True and data["loops_total"] == 1 and data["loops_succeeded"] == 1
    assert data["ts"].endswith("+09:00")
    assert report.report_path.endswith(f"self_improve_runs/{data['ts'][:10]}.json")
    [h] = data["results"]
    assert h["loop_id"] == "loop_h_cache_warming" and h["status"] == "succeeded"
    # Proposed: the head queries whose payload answers as the service does (the rest are withheld).
    assert h["scanned"] > 1000 and 150 < h["actions_proposed"] <= 200 and h["actions_executed"] == 0
    assert data["totals"] == {"scanned": h["scanned"], "actions_proposed": h["actions_proposed"], "actions_executed": 0}
    assert 0 < h["cpu_seconds"] < h["cost_ceiling_cpu_seconds"] == 600


def test_one_failing_loop_never_stops_the_others(small_world, tmp_path):
    report = run_loops_at(
        db_path=str(small_world),
        partition=None,
        reports_dir=str(tmp_path / "r"),
        storage_dir=str(tmp_path / "s"),
        loops=(broken_loop(), LOOP_H),
    )
    by_id = {r.loop_id: r for r in report.results}
    assert by_id["loop_f_channel_roi"].status == "failed"
    assert "amount_jpy 'abc'" in by_id["loop_f_channel_roi"].error
    # Loop H still ran its own run; its default partition (yesterday) is past the small world's
    # logs, so what stops it is its own window check, not loop F's failure.
    h = by_id["loop_h_cache_warming"]
    assert h.run_id is not None and h.run_id != by_id["loop_f_channel_roi"].run_id
    assert [c.split(":")[0] for c in h.checks_failed] == ["window_not_abnormally_small"]
    assert report.loops_total == 2 and not report.ok


def test_execute_through_the_orchestrator_writes(small_world, tmp_path):
    report = run_loops_at(
        only=["H"],
        db_path=str(small_world),
        partition=LAST_DAY,
        execute=True,
        reports_dir=str(tmp_path / "r"),
        storage_dir=str(tmp_path / "s"),
    )
    [h] = report.results
    assert h.actions_executed == h.actions_proposed > 150 and report.dry_run is False


def test_partition_range_runs_each_partition(small_world, tmp_path):
    report = run_loops_at(
        only=["H"],
        db_path=str(small_world),
        partition="2026-11-18",
        until=LAST_DAY,
        reports_dir=str(tmp_path / "r"),
        storage_dir=str(tmp_path / "s"),
    )
    assert [r.partition_key for r in report.results] == ["2026-11-18", "2026-11-19", "2026-11-20"]
    assert report.ok


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--only", "loop_z_nothing"], "unknown loop id 'loop_z_nothing'"),
        (["run", "--only", "loop_x_missing"], "unknown loop id 'loop_x_missing'"),
        (
            ["run", "--only", "H", "--partition", "2026-13-45"],
            "'2026-13-45' is not a partition of loop_h_cache_warming",
        ),
        (["run", "--only", "H", "--partition", "2026-11"], "'2026-11' is not a partition of loop_h_cache_warming"),
        (["run", "--partition", "2026-11-20"], "'2026-11-20' is not a partition of loop_a_hallucination_guard (weekly"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(small_world, capsys, argv, message):
    assert main(argv + ["--db", str(small_world)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_missing_database_exits_2(tmp_path, capsys):
    assert main(["run", "--db", str(tmp_path / "missing.db")]) == 2
    assert "AutonoMath database not found" in capsys.readouterr().err


def test_cli_exit_1_when_a_loop_fails(small_world, tmp_path, monkeypatch, capsys):
    conn_path = small_world
    from autonomath_pipelines.contract.sqlite import sqlite3

    conn = sqlite3.connect(str(conn_path))
    conn.execute("ALTER TABLE query_log DROP COLUMN tier")
    conn.commit()
    conn.close()
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--only", "H", "--db", str(small_world), "--partition", LAST_DAY]) == 1
    out = capsys.readouterr().out
    assert "0/1 loop runs succeeded" in out and "table query_log is missing column tier" in out


def test_a_catalog_loop_without_an_implementation_is_named():
    from autonomath_pipelines.orchestrator import UsageError, select_loops

    with pytest.raises(UsageError, match="loop loop_j_gold_expansion is in the catalog but not implemented yet"):
        select_loops(["J"], loops=(LOOP_H,))


def test_default_partition_is_the_last_complete_one_and_a_week_in_progress_is_accepted_where_it_exists():
    from zoneinfo import ZoneInfo

    from autonomath_pipelines.contract.timestamps import utc_now
    from autonomath_pipelines.loops import LOOP_DEFINITIONS
    from autonomath_pipelines.loops.common import in_progress_partition_key, last_complete_partition_key
    from autonomath_pipelines.orchestrator import UsageError, partition_keys_for

    by_id = {loop.spec.loop_id: loop for loop in LOOP_DEFINITIONS}
    loop_a, loop_b = by_id["loop_a_hallucination_guard"], by_id["loop_b_testimonial_seo"]
    now = utc_now()
    assert partition_keys_for(loop_a, None) == [last_complete_partition_key(loop_a.spec, now)]
    current = in_progress_partition_key(loop_a.spec, now)
    assert partition_keys_for(loop_a, current) == [current]
    this_month = now.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-01")
    with pytest.raises(UsageError, match=f"'{this_month}' is not a partition of loop_b_testimonial_seo"):
        partition_keys_for(loop_b, this_month)
