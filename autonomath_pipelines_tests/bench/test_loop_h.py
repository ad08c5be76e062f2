"""``autonomath-loops bench`` end to end on the small demo world (fast: 50 queries, one repeat)."""

import datetime as dt
import hashlib
import json
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from autonomath_pipelines.bench.loop_h import EXIT_USAGE, latency_stats, run_benchmark
from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines_tests.conftest import LAST_DAY


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def table_rows(db, table) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


def test_bench_on_the_small_world(small_world, tmp_path):
    out = tmp_path / "bench"
    before = sha256(small_world)
    lines: list[str] = []

    code = run_benchmark(
        db_path=str(small_world),
        scale="small",
        seed=7,
        queries=50,
        repeats=1,
        out_dir=str(out),
        rebuild=False,
        say=lines.append,
    )

    assert code == 0
    assert sha256(small_world) == before, "the source world must never be written"
    assert table_rows(small_world, "query_cache") == 0
    result = json.loads((out / "bench_loop_h.json").read_text(encoding="utf-8"))
    png = out / "bench_loop_h.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    world = result["world"]
    assert world["built_this_run"] is False and world["row_counts"]["query_log"] > 0
    assert world["scale"] == "small" and world["seed"] == 7  # read from the world's truth sidecar

    loop_h = result["loop_h"]
    # The fixture's logs end 2026-11-21 00:00 JST: the bench targets its last day, whatever today is.
    assert loop_h["partition_key"] == LAST_DAY
    assert [r["status"] for r in loop_h["dry_runs"]] == ["succeeded"]
    assert loop_h["dry_runs"][0]["execute"] is False and loop_h["dry_runs"][0]["actions_executed"] == 0
    assert loop_h["dry_runs"][0]["scanned"] > 0 and 0 < loop_h["dry_runs"][0]["actions_proposed"] <= 200
    executed = loop_h["execute_run"]
    assert executed["status"] == "succeeded" and executed["actions_executed"] > 0
    assert executed["db"] != str(small_world) and executed["db"].startswith(str(out))
    assert loop_h["median"]["cpu_seconds"] > 0 and loop_h["cost_ceiling_cpu_seconds"] == 600
    assert loop_h["all_succeeded"] is True

    latency = result["latency"]
    assert latency["queries"] == result["head"]["count"] == 50
    assert latency["cache_misses"] == 0 and latency["payload_mismatches"] == 0
    cold, hit = latency["median"]["cold"], latency["median"]["hit"]
    for figures in (cold, hit):
        assert 0 < figures["p50_us"] <= figures["p95_us"] <= figures["p99_us"]
        assert figures["mean_us"] > 0
    assert hit["p95_us"] < cold["p95_us"]
    assert latency["median"]["ratios"]["p95"] == pytest.approx(cold["p95_us"] / hit["p95_us"], rel=1e-3)
    assert [len(s) for s in latency["samples_ns"]["cold"]] == [50]
    assert result["targets"]["p95_ratio_min"] == 15 and result["targets"]["loop_h_cpu_seconds_max"] == 30

    machine = result["machine"]
    assert machine["cpu_count"] >= 1 and machine["python"] and tuple(map(int, machine["sqlite"].split("."))) >= (3, 45)

    by_result = latency["by_result"]
    assert by_result["with_results"]["queries"] + by_result["no_results"]["queries"] == 50
    # The working copy (as large as the world) is removed; the summary names both paths and targets.
    assert not list(out.glob("*.db*"))
    text = "\n".join(lines)
    assert "cold search" in text and "cache hit" in text and "target" in text


def test_bench_builds_a_missing_world(tmp_path):
    db = tmp_path / "worlds" / "fresh.db"
    lines: list[str] = []
    code = run_benchmark(
        db_path=str(db),
        scale="small",
        seed=3,
        queries=20,
        repeats=1,
        out_dir=str(tmp_path / "out"),
        rebuild=False,
        say=lines.append,
    )
    assert code == 0 and db.is_file()
    result = json.loads((tmp_path / "out" / "bench_loop_h.json").read_text(encoding="utf-8"))
    assert result["world"]["built_this_run"] is True and result["world"]["build_seconds"] > 0
    # A world built today ends at today's 00:00 JST: loop H's default partition (yesterday) has data.
    yesterday = dt.datetime.now(ZoneInfo("Asia/Tokyo")).date() - dt.timedelta(days=1)
    assert result["loop_h"]["partition_key"] in {yesterday.isoformat(), result["world"]["logs_last_day_jst"]}
    assert result["loop_h"]["dry_runs"][0]["scanned"] > 0
    assert any("built in" in line for line in lines)


@pytest.mark.parametrize("kwargs", [{"queries": 0}, {"repeats": 0}, {"scale": "huge"}])
def test_bad_input_is_exit_2_with_one_line(tmp_path, capsys, kwargs):
    args = (
        dict(
            db_path=str(tmp_path / "never.db"),
            scale="small",
            seed=7,
            queries=50,
            repeats=1,
            out_dir=str(tmp_path / "out"),
            rebuild=False,
            say=lambda line: None,
        )
        | kwargs
    )
    assert run_benchmark(**args) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("autonomath-loops bench:")
    assert not (tmp_path / "never.db").exists()


def test_latency_stats_in_microseconds():
    stats = latency_stats(np.arange(1, 101) * 1_000)  # 1..100 µs
    assert stats["n"] == 100 and stats["min_us"] == 1 and stats["max_us"] == 100
    assert stats["p50_us"] == pytest.approx(50.5) and stats["p95_us"] == pytest.approx(95.05)
    assert stats["mean_us"] == pytest.approx(50.5)
