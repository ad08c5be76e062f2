"""Loop H end to end on the small demo world, through Dagster."""

import json

import dagster as dg
import pandas as pd

from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.lib.search import ProgramSearcher
from autonomath_pipelines.lib.service_agreement import CACHE
from autonomath_pipelines.lib.textnorm import normalize_query, query_hash
from autonomath_pipelines.loops.cache_payloads import service_popularity
from autonomath_pipelines.loops.loop_h_cache_warming import LOOP, MAX_CACHE_ROWS
from autonomath_pipelines.orchestrator import root_cause
from autonomath_pipelines.resources import AutonomathDatabase
from autonomath_pipelines_tests.conftest import LAST_DAY
from autonomath_pipelines_tests.loops.harness import check_outcomes, materialized, metadata, run_loop, sha256

# 2026-11-20 JST = [2026-11-19T15:00Z, 2026-11-20T15:00Z)
DAY_START, DAY_END = "2026-11-19T15:00:00Z", "2026-11-20T15:00:00Z"


def run_loop_h(db_path, storage, *, execute=False, partition=LAST_DAY, run_config=None):
    return run_loop(LOOP, db_path, storage, partition, execute=execute, run_config=run_config)


def query_cache_rows(db_path) -> pd.DataFrame:
    return AutonomathDatabase(path=str(db_path)).read_frame("SELECT * FROM query_cache ORDER BY query_hash")


def expected_head(db_path) -> list[str]:
    """The day's top-200 normalized queries, computed independently of the loop's code path."""
    conn = sqlite3.connect(str(db_path))
    texts = [
        t for (t,) in conn.execute("SELECT query_text FROM query_log WHERE ts >= ? AND ts < ?", (DAY_START, DAY_END))
    ]
    conn.close()
    counts: dict[str, int] = {}
    for text in texts:
        key = normalize_query(text)
        if key:
            counts[key] = counts.get(key, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [text for text, _ in ranked[:MAX_CACHE_ROWS]]


def test_dry_run_leaves_the_database_byte_identical(small_world, tmp_path):
    before = sha256(small_world)
    result = run_loop_h(small_world, tmp_path)
    assert result.success
    assert sha256(small_world) == before
    published = metadata(result, "query_cache_published")
    assert published["dry_run"] is True and published["rows_written"] == 0
    candidates = metadata(result, "cache_warming_candidates")
    assert published["rows_would_write"] == candidates["candidates_proposed"] == candidates["decision_cache"]
    assert candidates["head_queries"] == MAX_CACHE_ROWS and candidates["candidates_proposed"] >= 0.85 * MAX_CACHE_ROWS


def service_answers_of_the_day(db_path) -> dict[str, tuple[float, str | None, float]]:
    """Per normalized query: share of requests the service answered, its most frequent top-1 and that
    top-1's share of the answered requests — read straight from query_log, not through the loop's code."""
    conn = sqlite3.connect(str(db_path))
    rows = conn.execute(
        "SELECT query_text, result_count, top1_program_id FROM query_log WHERE ts >= ? AND ts < ?", (DAY_START, DAY_END)
    ).fetchall()
    conn.close()
    per: dict[str, list] = {}
    for text, count, top1 in rows:
        per.setdefault(normalize_query(text), []).append((count, top1))
    out = {}
    for text, answers in per.items():
        answered = [t for c, t in answers if c > 0 and t]
        modal = max(sorted(set(answered)), key=answered.count) if answered else None
        out[text] = (len(answered) / len(answers), modal, answered.count(modal) / len(answered) if answered else 0.0)
    return out


def test_cached_answers_are_the_services_answers(small_world, tmp_path):
    """Issue 13: no empty payload for a head query the service answered; top-1 agreement >= 95 %."""
    result = run_loop_h(small_world, tmp_path, execute=True)
    assert result.success
    outcomes = check_outcomes(result)
    assert outcomes["no_empty_payload_for_answered_query"] is True and outcomes["top1_agrees_with_service"] is True
    service = service_answers_of_the_day(small_world)
    rows = query_cache_rows(small_world)
    answered_head = [t for t in expected_head(small_world) if service[t][0] > 0.5]
    cached = {r.query_text: json.loads(r.payload_json) for r in rows.itertuples()}
    assert all(cached[t]["result_count"] > 0 for t in answered_head if t in cached)
    # Every cached row puts the service's consistent top-1 first; none answers what the service declines.
    for text, payload in cached.items():
        answered_share, modal, modal_share = service[text]
        assert answered_share > 0.5, text
        if modal_share > 0.5:
            assert payload["results"][0]["program_id"] == modal, text
    candidates = metadata(result, "cache_warming_candidates")
    assert candidates["empty_payloads_for_answered"] == 0 and candidates["top1_agreement"] >= 0.95
    assert 0 <= candidates["top1_agreement_all"] <= candidates["top1_agreement"]


def test_the_top_query_is_found_through_its_alias(small_world, tmp_path):
    # 「ものづくり補助金」 is not in the program's name (ものづくり・商業・サービス生産性向上促進補助金):
    # the service finds it through am_alias, and so must the cache.
    result = run_loop_h(small_world, tmp_path, execute=True)
    service = service_answers_of_the_day(small_world)
    payload = json.loads(query_cache_rows(small_world).set_index("query_text").loc["ものづくり補助金", "payload_json"])
    assert result.success and payload["results"][0]["program_id"] == service["ものづくり補助金"][1]
    assert "ものづくり補助金" not in payload["results"][0]["name"]


def test_execute_writes_exactly_the_cacheable_head_with_live_payloads(small_world, tmp_path):
    result = run_loop_h(small_world, tmp_path, execute=True)
    assert result.success
    rows = query_cache_rows(small_world)
    head = expected_head(small_world)
    assert len(head) == MAX_CACHE_ROWS, "the small world should have more than 200 distinct queries a day"
    candidates = pd.read_parquet(tmp_path / "parquet" / "cache_warming_candidates" / f"{LAST_DAY}.parquet")
    assert list(candidates["query_text"]) == head
    assert set(rows["query_text"]) == set(candidates.loc[candidates["cache_decision"] == CACHE, "query_text"])
    assert all(rows["query_hash"] == rows["query_text"].map(query_hash))
    assert set(rows["partition_key"]) == {LAST_DAY} and set(rows["loop_id"]) == {"loop_h_cache_warming"}
    assert set(rows["run_id"]) == {result.run_id}
    # TTL: 24 h after computation, in the future.
    computed = pd.to_datetime(rows["computed_at"], utc=True)
    ttl = pd.to_datetime(rows["ttl_until"], utc=True)
    assert ((ttl - computed) == pd.Timedelta(hours=24)).all() and (ttl > pd.Timestamp.now(tz="UTC")).all()
    # The cached payload is what a live search returns now.
    conn = sqlite3.connect(str(small_world))
    popularity = service_popularity(AutonomathDatabase(path=str(small_world)), DAY_START)
    assert popularity and metadata(result, "cache_warming_candidates")["popularity_programs"] == len(popularity)
    with ProgramSearcher.over(conn, popularity=popularity) as searcher:
        for row in rows.head(20).itertuples():
            live = searcher.payload(row.query_text)
            assert json.loads(row.payload_json) == json.loads(json.dumps(live))
    conn.close()
    assert metadata(result, "query_cache_published")["rows_written"] == len(rows)


def test_rerunning_a_partition_changes_nothing(small_world, tmp_path):
    assert run_loop_h(small_world, tmp_path, execute=True).success
    first = query_cache_rows(small_world)
    again = run_loop_h(small_world, tmp_path, execute=True)
    assert again.success
    second = query_cache_rows(small_world)
    assert len(second) == len(first) > 0
    # The rerun searches nothing anew: every answer comes from the first run's store.
    searched = metadata(again, "cache_warming_candidates")
    assert searched["search_answers_stored"] == searched["payloads_computed"] > 0
    stable = ["query_hash", "query_text", "payload_json", "partition_key", "evidence_json"]
    pd.testing.assert_frame_equal(first[stable], second[stable])


def test_a_failing_blocking_gate_stops_the_publish(small_world, tmp_path):
    before = sha256(small_world)
    # A negative TTL makes every row expired: the ttl_in_future gate must block publishing.
    result = run_loop_h(
        small_world,
        tmp_path,
        execute=True,
        run_config={"ops": {"cache_warming_candidates": {"config": {"ttl_hours": -1.0}}}},
    )
    assert not result.success
    evaluations = check_outcomes(result)
    assert evaluations["ttl_in_future"] is False and evaluations["payloads_valid"] is True
    assert "query_cache_published" not in materialized(result)
    assert sha256(small_world) == before


def test_an_empty_window_fails_its_check_and_publishes_nothing(small_world, tmp_path):
    result = run_loop_h(small_world, tmp_path, execute=True, partition="2025-01-02")
    assert not result.success
    assert check_outcomes(result)["window_not_abnormally_small"] is False
    assert metadata(result, "cache_warming_snapshot")["dagster/row_count"] == 0
    assert metadata(result, "query_cache_published")["rows_written"] == 0
    assert query_cache_rows(small_world).empty


def test_metadata_the_ui_plots(small_world, tmp_path):
    result = run_loop_h(small_world, tmp_path)
    head = metadata(result, "cache_warming_zipf_head")
    assert 0.3 < head["zipf_exponent"] < 2.5
    assert 0 < head["head_coverage"] <= 1 and head["unique_queries"] > MAX_CACHE_ROWS
    assert head["preview"].startswith("|") and "query_text" in head["preview"]
    snapshot = metadata(result, "cache_warming_snapshot")
    assert snapshot["window_start_utc"] == DAY_START and snapshot["window_end_utc"] == DAY_END
    assert snapshot["dagster/row_count"] >= head["requests"] > 0


def test_missing_source_table_fails_naming_it(small_world, tmp_path):
    conn = sqlite3.connect(str(small_world))
    conn.execute("DROP TABLE am_alias")
    conn.commit()
    conn.close()
    result = run_loop_h(small_world, tmp_path)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failure.step_key == "cache_warming_snapshot"
    assert "missing table am_alias" in root_cause(failure.step_failure_data.error)
