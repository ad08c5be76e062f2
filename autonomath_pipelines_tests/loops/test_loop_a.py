"""Loop A end to end on the small demo world, through Dagster."""

import json

import pandas as pd
import pytest

from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.demo import hallucination_family_of, load_truth
from autonomath_pipelines.lib.textnorm import normalize_query
from autonomath_pipelines.loops.loop_a_hallucination_guard import LOOP
from autonomath_pipelines.resources import AutonomathDatabase
from autonomath_pipelines_tests.conftest import LAST_FULL_WEEK
from autonomath_pipelines_tests.loops.harness import check_outcomes, materialized, metadata, run_loop, sha256


def run(db, tmp_path, embedding_cache, **kwargs):
    return run_loop(LOOP, db, tmp_path, LAST_FULL_WEEK, embedding_cache=embedding_cache, **kwargs)


def candidates_in_db(db) -> pd.DataFrame:
    return AutonomathDatabase(path=str(db)).read_frame("SELECT * FROM hallucination_guard_candidates ORDER BY pattern")


def family_of(db) -> dict[str, dict]:
    truth = load_truth(db)
    families = {f["id"]: f for f in truth["hallucination_families"]}
    return {text: families[family] for text, family in hallucination_family_of(truth).items()}


def test_dry_run_writes_nothing_and_proposes_planted_themes(small_world, tmp_path, embedding_cache):
    before = sha256(small_world)
    result = run(small_world, tmp_path, embedding_cache)
    assert result.success
    assert sha256(small_world) == before
    candidates = result.output_for_node("hallucination_guard_candidates")
    families = family_of(small_world)
    assert len(candidates) >= 3
    # Every proposal is a planted hallucination theme that no launch guard covers yet.
    for pattern in candidates["pattern"]:
        assert pattern in families, pattern
        assert not families[pattern]["covered_by_guard"], pattern
    assert all(check_outcomes(result).values())
    assert metadata(result, "hallucination_guard_candidates_published")["rows_would_write"] == len(candidates)


def test_execute_writes_pending_candidates_with_provenance(small_world, tmp_path, embedding_cache):
    result = run(small_world, tmp_path, embedding_cache, execute=True)
    assert result.success
    rows = candidates_in_db(small_world)
    assert len(rows) == metadata(result, "hallucination_guard_candidates")["dagster/row_count"] > 0
    assert set(rows["status"]) == {"pending_review"}
    assert set(rows["partition_key"]) == {LAST_FULL_WEEK} and set(rows["run_id"]) == {result.run_id}
    assert rows["model_name"].notna().all() and rows["label"].str.len().gt(0).all()
    evidence = json.loads(rows["evidence_json"].iloc[0])
    assert {"examples", "requests", "density", "cluster"} <= set(evidence) and evidence["examples"]


def test_rerun_is_idempotent_and_keeps_review_decisions(small_world, tmp_path, embedding_cache):
    assert run(small_world, tmp_path, embedding_cache, execute=True).success
    first = candidates_in_db(small_world)
    conn = sqlite3.connect(str(small_world))
    conn.execute(
        "UPDATE hallucination_guard_candidates SET status = 'rejected' WHERE pattern = ?", (first["pattern"][0],)
    )
    conn.commit()
    conn.close()
    assert run(small_world, tmp_path, embedding_cache, execute=True).success
    second = candidates_in_db(small_world)
    assert list(second["pattern"]) == list(first["pattern"])
    assert second.set_index("pattern").loc[first["pattern"][0], "status"] == "rejected"


def test_next_week_does_not_repropose_a_pending_theme(small_world, tmp_path, embedding_cache):
    assert run(small_world, tmp_path, embedding_cache, execute=True).success
    earlier = set(candidates_in_db(small_world)["pattern"])
    result = run_loop(LOOP, small_world, tmp_path, "2026-11-15", embedding_cache=embedding_cache)
    assert result.success
    families = family_of(small_world)
    earlier_families = {families[p]["id"] for p in earlier}
    for pattern in result.output_for_node("hallucination_guard_candidates")["pattern"]:
        assert families.get(pattern, {}).get("id") not in earlier_families


def test_an_empty_window_fails_its_check_and_publishes_nothing(small_world, tmp_path, embedding_cache):
    result = run_loop(LOOP, small_world, tmp_path, "2025-01-05", embedding_cache=embedding_cache, execute=True)
    assert not result.success
    assert check_outcomes(result)["window_not_abnormally_small"] is False
    assert metadata(result, "hallucination_guard_snapshot")["dagster/row_count"] == 0
    assert metadata(result, "hallucination_guard_candidates_published")["rows_written"] == 0


def test_a_cap_above_the_hard_limit_is_refused_before_anything_is_written(small_world, tmp_path, embedding_cache):
    import dagster as dg

    from autonomath_pipelines.orchestrator import root_cause

    before = sha256(small_world)
    result = run(
        small_world,
        tmp_path,
        embedding_cache,
        execute=True,
        run_config={"ops": {"hallucination_guard_candidates": {"config": {"max_candidates": 60}}}},
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "max_candidates 60 exceeds the per-run cap of 50" in root_cause(failure.step_failure_data.error)
    assert "hallucination_guard_candidates_published" not in materialized(result)
    assert sha256(small_world) == before


@pytest.mark.parametrize("lookback", [14])
def test_lookback_is_configurable(small_world, tmp_path, embedding_cache, lookback):
    result = run(
        small_world,
        tmp_path,
        embedding_cache,
        run_config={"ops": {"hallucination_guard_snapshot": {"config": {"lookback_days": lookback}}}},
    )
    assert result.success
    window = metadata(result, "hallucination_guard_snapshot")
    assert (window["window_start_utc"], window["window_end_utc"]) == ("2026-10-31T15:00:00Z", "2026-11-14T15:00:00Z")


REPHRASED = "仮想空間 出店 助成金 全額 特別枠"  # a customer's rephrasing of a guarded ask
UNRELATED = "宇宙エレベーター 建設 補助金 個人"  # a new ask, asked on its own


def add_sessions(db, guarded: str) -> None:
    """15 sessions that ask a guarded pattern and then rephrase it; 15 others that ask UNRELATED alone
    (all zero-result, inside LAST_FULL_WEEK)."""
    rows = []
    for i in range(15):
        ts = f"2026-11-{9 + i % 5:02d}T0{i % 10}:1{i % 6}:00Z"
        rows += [
            (ts, "am_test", f"s_rephrase_{i}", guarded),
            (ts.replace(":00Z", ":40Z"), "am_test", f"s_rephrase_{i}", REPHRASED),
            (ts, "am_test", f"s_alone_{i}", UNRELATED),
        ]
    conn = sqlite3.connect(str(db))
    with conn:
        conn.executemany(
            "INSERT INTO query_log (ts, api_key, session_id, query_text, confidence, result_count, "
            "latency_ms, tier) VALUES (?, ?, ?, ?, 0.2, 0, 12.0, 'free')",
            rows,
        )
    conn.close()


def test_a_rephrasing_of_a_guarded_ask_is_not_proposed(small_world, tmp_path, embedding_cache):
    [guarded] = AutonomathDatabase(path=str(small_world)).read_frame(
        "SELECT pattern FROM hallucination_guard ORDER BY id LIMIT 1"
    )["pattern"]
    add_sessions(small_world, guarded)
    result = run(small_world, tmp_path / "linked", embedding_cache)
    assert result.success
    proposed = set(result.output_for_node("hallucination_guard_candidates")["pattern"])
    assert normalize_query(UNRELATED) in proposed and normalize_query(REPHRASED) not in proposed
    assert metadata(result, "hallucination_guard_candidates")["clusters_covered_by_sessions"] >= 1

    # It is the sessions that tell: with links switched off the rephrasing is proposed as new.
    unlinked = run(
        small_world,
        tmp_path / "unlinked",
        embedding_cache,
        run_config={"ops": {"hallucination_guard_candidates": {"config": {"max_reformulation_p": 1e-300}}}},
    )
    assert normalize_query(REPHRASED) in set(unlinked.output_for_node("hallucination_guard_candidates")["pattern"])
    assert metadata(unlinked, "hallucination_guard_candidates")["reformulation_links"] == 0
