"""The load benchmark: the same loops at 1× and N× the service side by side, and writers at once."""

from __future__ import annotations

import json

import pytest

from autonomath_pipelines.bench.load import (
    JSON_NAME,
    MD_NAME,
    PNG_NAME,
    probe_loop_and_promote,
    probe_two_loops,
    run_load_benchmark,
)
from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.demo import load_truth, truth_path


def test_side_by_side_cost_on_worlds_of_one_and_two_services(tmp_path):
    """Base ``small`` so that it runs in a test: the 1× and 2× worlds are built once, reused after."""
    lines: list[str] = []
    worlds = tmp_path / "worlds"
    result = run_load_benchmark(
        2, ["F"], str(tmp_path / "out"), say=lines.append, repeats=1, world_dir=worlds, probes=False, base="small"
    )
    small, big = (load_truth(worlds / f"autonomath-{name}.db") for name in ("small", "small-2x"))
    assert big["row_counts"]["programs"] == 2 * small["row_counts"]["programs"]
    assert small["as_of"] == big["as_of"] == "2026-11-21"
    [row] = result["comparison"]
    assert row["partition_key"] == "2026-11-08" and row["status_1x"] == row["status_nx"] == "succeeded"
    per_day = [t["row_counts"]["query_log"] / t["days"] for t in (small, big)]
    assert per_day[1] == pytest.approx(2 * per_day[0], rel=0.05)  # twice the traffic a day
    assert row["cpu_ratio"] == pytest.approx(row["warm_cpu_s_nx"] / row["warm_cpu_s_1x"], abs=0.01)
    assert result["targets"]["month_within_target"] is True
    assert result["targets"]["writers_at_once_without_lock_error"] is None  # not measured: said so
    saved = json.loads((tmp_path / "out" / JSON_NAME).read_text())
    assert set(saved["cost"]) == {"1", "2"}
    assert (tmp_path / "out" / "load" / "small-2x" / "bench_loops.json").is_file()
    md = (tmp_path / "out" / MD_NAME).read_text()
    assert "| F | weekly | 2026-11-08 |" in md and "1× " in md and "2×" in md
    assert (tmp_path / "out" / PNG_NAME).stat().st_size > 10_000

    again: list[str] = []
    run_load_benchmark(
        2, ["F"], str(tmp_path / "out"), say=again.append, repeats=1, world_dir=worlds, probes=False, base="small"
    )
    assert sum("reusing" in line for line in again) == 2 and not any("building" in line for line in again)


def test_factor_one_is_refused(tmp_path):
    with pytest.raises(ValueError, match="factor"):
        run_load_benchmark(1, ["F"], str(tmp_path), say=lambda _: None, world_dir=tmp_path, probes=False)


def test_writers_at_once_through_the_cli(small_world_pristine, tmp_path):
    """Two executing loops started together, then a loop running while loop B's pages are approved and
    promoted one by one: every process exits 0 and none reports a lock error."""
    import shutil

    db = tmp_path / "autonomath.db"
    shutil.copyfile(small_world_pristine, db)
    shutil.copyfile(truth_path(small_world_pristine), truth_path(db))
    lines: list[str] = []
    two = probe_two_loops(db, tmp_path / "two", lines.append, pair=("B", "I"))
    assert two["passed"], two
    assert [p["process"] for p in two["processes"]] == ["loop B", "loop I"]
    with sqlite3.connect(str(db)) as conn:
        pages = conn.execute(
            "SELECT count(*) FROM seo_testimonial_candidates WHERE status = 'pending_review'"
        ).fetchone()[0]
    assert pages > 0
    both = probe_loop_and_promote(db, tmp_path / "promote", lines.append, letter="B", loop="H")
    assert both["passed"], both
    assert both["promotions_while_running"] >= 1
    with sqlite3.connect(str(db)) as conn:
        assert (
            conn.execute("SELECT count(*) FROM seo_testimonial_candidates WHERE status = 'promoted'").fetchone()[0] >= 1
        )
