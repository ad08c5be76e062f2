"""Loop C end to end on the small demo world, through Dagster."""

import json

import pandas as pd

from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.demo import load_truth
from autonomath_pipelines.lib.personal_head import (
    baseline_cache,
    customer_heads,
    global_head,
    replay_hit_rate,
)
from autonomath_pipelines.lib.search import ProgramSearcher
from autonomath_pipelines.lib.textnorm import query_hash
from autonomath_pipelines.loops.cache_payloads import service_popularity
from autonomath_pipelines.loops.loop_c_personalized_cache import LOOP, MAX_ROWS_PER_CUSTOMER, PAID_REQUESTS_SQL
from autonomath_pipelines.resources import AutonomathDatabase
from autonomath_pipelines_tests.loops.harness import check_outcomes, materialized, metadata, run_loop, sha256

# The last complete week of the small world (Sun 2026-11-15 .. Sat 2026-11-21 JST).
LAST_WEEK = "2026-11-15"
# The week before: its following week is in the log, so the replay is computable.
REPLAY_WEEK = "2026-11-08"
# Window of REPLAY_WEEK: 30 days ending 2026-11-15 00:00 JST; the next week ends 2026-11-22 00:00 JST.
REPLAY_END, NEXT_END = "2026-11-14T15:00:00Z", "2026-11-21T15:00:00Z"


def run_loop_c(db_path, storage, *, execute=False, partition=LAST_WEEK, run_config=None):
    return run_loop(LOOP, db_path, storage, partition, execute=execute, run_config=run_config)


def cache_rows(db_path) -> pd.DataFrame:
    return AutonomathDatabase(path=str(db_path)).read_frame(
        "SELECT * FROM personalized_cache ORDER BY customer_id, query_hash"
    )


def paid_active_customers(db_path) -> set[str]:
    conn = sqlite3.connect(str(db_path))
    found = {
        c
        for (c,) in conn.execute("SELECT DISTINCT customer_id FROM api_keys WHERE tier = 'paid' AND revoked_at IS NULL")
    }
    conn.close()
    return found


def test_dry_run_leaves_the_database_byte_identical(small_world, tmp_path):
    before = sha256(small_world)
    result = run_loop_c(small_world, tmp_path)
    assert result.success
    assert sha256(small_world) == before
    published = metadata(result, "personalized_cache_published")
    assert published["dry_run"] is True and published["rows_written"] == 0
    candidates = metadata(result, "personalized_cache_candidates")
    assert published["rows_would_write"] == candidates["candidates_proposed"] > 0
    assert all(check_outcomes(result).values())


def test_execute_writes_each_qualifying_customers_head(small_world, tmp_path):
    result = run_loop_c(small_world, tmp_path, execute=True)
    assert result.success
    rows = cache_rows(small_world)
    assert len(rows) == metadata(result, "personalized_cache_published")["rows_written"] > 0
    per_customer = rows.groupby("customer_id").size()
    assert (per_customer <= MAX_ROWS_PER_CUSTOMER).all()
    assert set(rows["customer_id"]) <= paid_active_customers(small_world)
    assert all(rows["query_hash"] == rows["query_text"].map(query_hash))
    assert set(rows["partition_key"]) == {LAST_WEEK} and set(rows["loop_id"]) == {"loop_c_personalized_cache"}
    ttl = pd.to_datetime(rows["ttl_until"], utc=True) - pd.to_datetime(rows["computed_at"], utc=True)
    assert (ttl == pd.Timedelta(days=7)).all()
    # Loyal customers (paid, ≥ 50 requests) are all cached, with a full head.
    loyal = {c["customer_id"] for c in load_truth(small_world)["loyal_customers"]}
    assert loyal and loyal <= set(rows["customer_id"])
    # Payloads are what a live search returns; shared queries were searched once.
    conn = sqlite3.connect(str(small_world))
    window_start = metadata(result, "personalized_cache_snapshot")["window_start_utc"]
    popularity = service_popularity(AutonomathDatabase(path=str(small_world)), window_start)
    with ProgramSearcher.over(conn, popularity=popularity) as searcher:
        for row in rows.head(10).itertuples():
            assert json.loads(row.payload_json) == json.loads(json.dumps(searcher.payload(row.query_text)))
    conn.close()
    candidates = metadata(result, "personalized_cache_candidates")
    assert candidates["payloads_computed"] + candidates["payloads_reused"] == candidates["head_queries"]
    assert candidates["payloads_computed"] >= rows["query_text"].nunique()
    # Written: exactly the rows that answer as the service does; the gates held.
    assert len(rows) == candidates["decision_cache"] == candidates["candidates_proposed"]
    assert candidates["empty_payloads_for_answered"] == 0 and candidates["top1_agreement"] >= 0.95
    assert candidates["customers"] == rows["customer_id"].nunique()


def test_rerunning_a_partition_changes_nothing(small_world, tmp_path):
    assert run_loop_c(small_world, tmp_path, execute=True).success
    first = cache_rows(small_world)
    assert run_loop_c(small_world, tmp_path, execute=True).success
    second = cache_rows(small_world)
    stable = ["customer_id", "query_hash", "query_text", "payload_json", "partition_key", "evidence_json"]
    assert len(first) == len(second) > 0
    pd.testing.assert_frame_equal(first[stable], second[stable])


def test_other_customers_rows_are_never_deleted(small_world, tmp_path):
    conn = sqlite3.connect(str(small_world))
    # An expired row of a customer not in this run, and an expired row of a customer in it.
    foreign = (
        "cus_not_in_this_run",
        query_hash("foreign"),
        "foreign",
        "{}",
        "2020-01-01T00:00:00Z",
        "2020-01-08T00:00:00Z",
        "{}",
        "loop_c_personalized_cache",
        "old",
        "2019-12-29",
        "v0",
    )
    conn.execute("INSERT INTO personalized_cache VALUES (?,?,?,?,?,?,?,?,?,?,?)", foreign)
    conn.commit()
    conn.close()
    result = run_loop_c(small_world, tmp_path, execute=True)
    assert result.success
    rows = cache_rows(small_world)
    written = sorted(set(rows["customer_id"]) - {"cus_not_in_this_run"})
    assert "cus_not_in_this_run" in set(rows["customer_id"])

    conn = sqlite3.connect(str(small_world))
    mine = (
        written[0],
        query_hash("stale"),
        "stale",
        "{}",
        "2020-01-01T00:00:00Z",
        "2020-01-08T00:00:00Z",
        "{}",
        "loop_c_personalized_cache",
        "old",
        "2019-12-29",
        "v0",
    )
    conn.execute("INSERT INTO personalized_cache VALUES (?,?,?,?,?,?,?,?,?,?,?)", mine)
    conn.commit()
    conn.close()
    assert run_loop_c(small_world, tmp_path, execute=True).success
    rows = cache_rows(small_world)
    texts = set(zip(rows["customer_id"], rows["query_text"]))
    assert ("cus_not_in_this_run", "foreign") in texts  # another customer's expired row survives
    assert (written[0], "stale") not in texts  # this run's customer's expired row is removed


def test_a_failing_blocking_gate_stops_the_publish(small_world, tmp_path):
    before = sha256(small_world)
    result = run_loop_c(
        small_world,
        tmp_path,
        execute=True,
        run_config={"ops": {"personalized_cache_candidates": {"config": {"ttl_days": -1.0}}}},
    )
    assert not result.success
    outcomes = check_outcomes(result)
    assert outcomes["ttl_in_future"] is False and outcomes["only_paid_active_customers"] is True
    assert "personalized_cache_published" not in materialized(result)
    assert sha256(small_world) == before


def test_an_empty_window_fails_its_check_and_publishes_nothing(small_world, tmp_path):
    result = run_loop_c(small_world, tmp_path, execute=True, partition="2025-01-05")
    assert not result.success
    assert check_outcomes(result)["window_not_abnormally_small"] is False
    assert metadata(result, "personalized_cache_snapshot")["dagster/row_count"] == 0
    assert metadata(result, "personalized_cache_published")["rows_written"] == 0
    assert cache_rows(small_world).empty


def test_replay_personal_cache_beats_the_global_top_20(small_world, tmp_path):
    result = run_loop_c(small_world, tmp_path, partition=REPLAY_WEEK)
    assert result.success
    heads_meta = metadata(result, "personalized_cache_heads")
    assert heads_meta["replay_computable"] is True
    assert heads_meta["replay_hit_rate"] > heads_meta["baseline_hit_rate"]

    # Independently of the loop's metadata: loyal customers, next week, from the loop's own heads.
    truth = load_truth(small_world)["loyal_customers"]
    loyal = [c["customer_id"] for c in truth]
    db = AutonomathDatabase(path=str(small_world))
    window_start = (pd.Timestamp(REPLAY_END) - pd.Timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    window = db.read_frame(PAID_REQUESTS_SQL, (window_start, REPLAY_END))
    following = db.read_frame(PAID_REQUESTS_SQL, (REPLAY_END, NEXT_END))
    heads = customer_heads(window)
    cached = {c: list(g) for c, g in heads.groupby("customer_id")["query_text"]}
    personal = replay_hit_rate(cached, following, loyal)
    baseline = replay_hit_rate(baseline_cache(loyal, global_head(window)), following, loyal)
    assert len(personal.per_customer) == len(loyal)
    assert personal.micro > baseline.micro + 0.3
    assert all(personal.per_customer[c] > baseline.per_customer[c] for c in loyal)
