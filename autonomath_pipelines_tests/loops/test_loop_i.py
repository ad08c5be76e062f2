"""Loop I end to end on the small demo world, through Dagster."""

import json

import dagster as dg
import pandas as pd
import pytest

from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.demo import load_truth
from autonomath_pipelines.loops.loop_i_doc_freshness import LOOP, MAX_QUEUE_ROWS
from autonomath_pipelines.resources import AutonomathDatabase
from autonomath_pipelines_tests.loops.harness import check_outcomes, materialized, metadata, run_loop, sha256

#: The week whose end (2026-11-22 00:00 JST) lies after the small world's last scan.
WEEK = "2026-11-15"
AS_OF = pd.Timestamp("2026-11-21T15:00:00Z")
TIER_WEIGHTS = {"S": 100.0, "A": 60.0, "B": 30.0, "C": 10.0}


def approx(value):
    return pytest.approx(value, abs=0.01)


def run(db, tmp_path, partition=WEEK, **kwargs):
    return run_loop(LOOP, db, tmp_path, partition, **kwargs)


def queue_in_db(db) -> pd.DataFrame:
    return AutonomathDatabase(path=str(db)).read_frame(
        "SELECT * FROM source_refetch_queue ORDER BY priority DESC, program_id"
    )


def programs_rows(db) -> list[tuple]:
    conn = sqlite3.connect(str(db))
    try:
        return conn.execute("SELECT * FROM programs ORDER BY program_id").fetchall()
    finally:
        conn.close()


def independent_ranking(db, as_of: pd.Timestamp, top_n: int = 500) -> pd.DataFrame:
    """The formula recomputed with plain pandas from the raw tables (no SQL window, no lib code)."""
    database = AutonomathDatabase(path=str(db))
    programs = database.read_frame("SELECT program_id, source_url, tier, source_fetched_at FROM programs")
    signals = database.read_frame(
        "SELECT id, observed_at, source_url, http_status, last_modified FROM source_change_signals"
    )
    signals = signals[(pd.to_datetime(signals["observed_at"], utc=True) < as_of) & (signals["http_status"] < 500)]
    latest = signals.sort_values(["observed_at", "id"]).groupby("source_url").tail(1)
    frame = programs.merge(latest, on="source_url", how="left")
    fetched = pd.to_datetime(frame["source_fetched_at"], utc=True)
    stale = ((as_of - fetched).dt.total_seconds() / 86400).clip(lower=0)
    modified = pd.to_datetime(frame["last_modified"], utc=True)
    changed = (frame["http_status"] == 200) & ((modified > fetched) | modified.isna())
    gone = frame["http_status"].isin([404, 410])
    change = changed * 100.0 + gone * 100.0
    frame["expected"] = 0.6 * stale + 0.3 * frame["tier"].map(TIER_WEIGHTS) + 0.1 * change
    frame["stale"], frame["changed"] = stale, changed
    return frame.sort_values(["expected", "program_id"], ascending=[False, True]).reset_index(drop=True)


def test_dry_run_leaves_db_byte_identical_and_passes_its_gates(small_world, tmp_path):
    before = sha256(small_world)
    result = run(small_world, tmp_path)
    assert result.success
    assert sha256(small_world) == before
    assert all(check_outcomes(result).values()) and "source_fetched_at_untouched" in check_outcomes(result)
    candidates = result.output_for_node("doc_freshness_candidates")
    assert 0 < len(candidates) <= MAX_QUEUE_ROWS
    assert metadata(result, "source_refetch_queue_published")["rows_would_write"] == len(candidates)
    meta = metadata(result, "doc_freshness_candidates")
    assert meta["dominant_staleness"] + meta["dominant_tier"] + meta["dominant_change"] == len(candidates)
    assert meta["max_priority"] >= meta["mean_priority"] > 0 and 0 < meta["share_changed"] < 1


def test_execute_writes_the_queue_and_never_touches_programs(small_world, tmp_path):
    programs_before = programs_rows(small_world)
    result = run(small_world, tmp_path, execute=True)
    assert result.success
    assert programs_rows(small_world) == programs_before
    rows = queue_in_db(small_world)
    assert 0 < len(rows) <= MAX_QUEUE_ROWS and not rows["source_url"].duplicated().any()
    assert set(rows["status"]) == {"pending_review"} and set(rows["partition_key"]) == {WEEK}
    assert set(rows["run_id"]) == {result.run_id} and rows["reason"].str.contains(" > ").all()
    evidence = json.loads(rows["evidence_json"].iloc[0])
    assert {"staleness", "tier", "change"} == set(evidence["terms"])
    assert evidence["terms"]["staleness"] + evidence["terms"]["tier"] + evidence["terms"]["change"] == approx(
        rows["priority"].iloc[0]
    )
    assert all(check_outcomes(result).values())


def test_rerun_is_idempotent_and_keeps_review_decisions(small_world, tmp_path):
    assert run(small_world, tmp_path, execute=True).success
    first = queue_in_db(small_world)
    conn = sqlite3.connect(str(small_world))
    conn.execute("UPDATE source_refetch_queue SET status = 'approved' WHERE source_url = ?", (first["source_url"][0],))
    conn.commit()
    conn.close()
    assert run(small_world, tmp_path, execute=True).success
    second = queue_in_db(small_world)
    assert len(second) == len(first)
    assert second["source_url"].tolist() == first["source_url"].tolist()
    assert second["priority"].tolist() == first["priority"].tolist()
    assert second.set_index("source_url").loc[first["source_url"][0], "status"] == "approved"


def test_two_week_backfill_keeps_partitions_apart(small_world, tmp_path):
    assert run(small_world, tmp_path, "2026-11-08", execute=True).success
    assert run(small_world, tmp_path, WEEK, execute=True).success
    rows = queue_in_db(small_world)
    assert set(rows["partition_key"]) == {"2026-11-08", WEEK}
    assert not rows.duplicated(["source_url", "partition_key"]).any()


def test_ranking_agrees_with_an_independent_pandas_computation(small_world, tmp_path):
    result = run(small_world, tmp_path)
    candidates = result.output_for_node("doc_freshness_candidates")
    expected = independent_ranking(small_world, AS_OF).head(len(candidates))
    assert candidates["program_id"].tolist() == expected["program_id"].tolist()
    assert candidates["priority"].to_numpy() == approx(expected["expected"].to_numpy())


def test_planted_changes_rank_above_unchanged_pages_of_the_same_tier_and_staleness(small_world, tmp_path):
    truth = load_truth(small_world)
    result = run(small_world, tmp_path)
    candidates = result.output_for_node("doc_freshness_candidates")
    ranking = independent_ranking(small_world, AS_OF)
    scanned_changed = set(candidates.loc[candidates["signal_class"] == "changed", "program_id"])
    # What the loop calls changed is what the world planted (a noisy server's 200 is not a change).
    assert scanned_changed and scanned_changed <= set(truth["changed_sources"])
    assert not scanned_changed & set(truth["noisy_sources"])
    rank = {p: i for i, p in enumerate(candidates["program_id"])}
    compared = 0
    for pid in scanned_changed:
        row = ranking.loc[ranking["program_id"] == pid].iloc[0]
        peers = ranking[
            (ranking["tier"] == row["tier"])
            & ~ranking["changed"]
            & (ranking["http_status"] != 404)
            & (ranking["stale"].round(0) <= round(row["stale"]))
        ]
        for peer in peers["program_id"]:
            assert peer not in rank or rank[peer] > rank[pid], (pid, peer)
            compared += 1
    assert compared > 100


def test_the_signal_window_ends_at_the_partition_end(small_world, tmp_path):
    """A backfill sees only the scans observed before its partition's end."""
    result = run(small_world, tmp_path, "2026-11-08")
    snapshot = result.output_for_node("doc_freshness_snapshot")
    end = metadata(result, "doc_freshness_snapshot")["window_end_utc"]
    assert end == "2026-11-14T15:00:00Z"
    assert (snapshot["signal_observed_at"].dropna() < end).all()


def test_a_tampered_source_fetched_at_fails_the_blocking_gate(small_world, tmp_path, monkeypatch):
    """Simulate another writer changing programs between the snapshot and the gate: nothing is published."""
    from autonomath_pipelines.loops import loop_i_doc_freshness as loop

    monkeypatch.setattr(loop, "programs_digest", lambda database: "tampered")
    before = sha256(small_world)
    result = run(small_world, tmp_path, execute=True)
    assert not result.success
    assert check_outcomes(result)["source_fetched_at_untouched"] is False
    assert "source_refetch_queue_published" not in materialized(result)
    assert sha256(small_world) == before


def test_top_n_above_the_cap_is_refused(small_world, tmp_path):
    before = sha256(small_world)
    result = run(
        small_world,
        tmp_path,
        execute=True,
        run_config={"ops": {"doc_freshness_candidates": {"config": {"top_n": 501}}}},
    )
    assert not result.success
    assert "source_refetch_queue_published" not in materialized(result)
    assert sha256(small_world) == before
    small = run(small_world, tmp_path, run_config={"ops": {"doc_freshness_candidates": {"config": {"top_n": 25}}}})
    assert small.success and len(small.output_for_node("doc_freshness_candidates")) == 25


def test_loop_shape_matches_the_catalog():
    assert {key.to_user_string() for key in (LOOP.candidates, LOOP.published)} == {
        "doc_freshness_candidates",
        "source_refetch_queue_published",
    }
    assert {a.group_names_by_key[k] for a in LOOP.assets for k in a.keys} == {"loop_i_doc_freshness"}
    assert LOOP.schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert (LOOP.spec.cadence, LOOP.spec.day, LOOP.spec.at) == ("weekly", "Tue", "02:00")


def test_a_raw_http_date_last_modified_is_evidence(small_world, tmp_path):
    """A crawler storing the Last-Modified header as sent: an older HTTP-date means the page is
    unchanged since the fetch, a newer one that it changed — as with contract text."""
    conn = sqlite3.connect(str(small_world))
    [(url_old, fetched_old), (url_new, fetched_new)] = conn.execute(
        "SELECT source_url, source_fetched_at FROM programs WHERE source_fetched_at < '2026-11-01' "
        "ORDER BY program_id LIMIT 2"
    ).fetchall()
    with conn:
        conn.executemany(
            "INSERT INTO source_change_signals (observed_at, source_url, http_status, last_modified) "
            "VALUES ('2026-11-20T18:00:00Z', ?, 200, ?)",
            [(url_old, "Thu, 01 Jan 2015 00:00:00 GMT"), (url_new, "Fri, 20 Nov 2026 09:00:00 GMT")],
        )
    conn.close()
    result = run(small_world, tmp_path)
    assert result.success
    snapshot = metadata(result, "doc_freshness_snapshot")
    assert "last_modified" not in snapshot.get("bad_rows", "")
    scored = result.output_for_node("doc_freshness_candidates")
    evidence = {r.source_url: json.loads(r.evidence_json) for r in scored.itertuples()}
    assert evidence[url_old]["signal_class"] == "unchanged" and evidence[url_new]["signal_class"] == "changed"
    assert evidence[url_old]["signal_last_modified"] == "Thu, 01 Jan 2015 00:00:00 GMT"
