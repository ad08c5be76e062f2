"""Loop E end to end on the small demo world, through Dagster."""

import json

import pandas as pd

from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.demo import load_truth
from autonomath_pipelines.lib.langdetect import LANGS
from autonomath_pipelines.lib.textnorm import normalize_query
from autonomath_pipelines.loops.loop_e_alias_expansion import LOOP
from autonomath_pipelines.resources import AutonomathDatabase
from autonomath_pipelines_tests.conftest import LAST_FULL_WEEK
from autonomath_pipelines_tests.loops.harness import check_outcomes, metadata, run_loop, sha256


def run(db, tmp_path, embedding_cache, **kwargs):
    return run_loop(LOOP, db, tmp_path, LAST_FULL_WEEK, embedding_cache=embedding_cache, **kwargs)


def alias_rows(db) -> pd.DataFrame:
    return AutonomathDatabase(path=str(db)).read_frame("SELECT * FROM alias_candidates ORDER BY entity_id, surface")


def test_dry_run_writes_nothing_and_finds_planted_aliases(small_world, tmp_path, embedding_cache):
    before = sha256(small_world)
    result = run(small_world, tmp_path, embedding_cache)
    assert result.success and sha256(small_world) == before
    assert all(check_outcomes(result).values())
    candidates = result.output_for_node("alias_expansion_candidates")
    planted = {(a["program_id"], normalize_query(a["surface"])): a for a in load_truth(small_world)["planted_aliases"]}
    proposed = list(zip(candidates["entity_id"], candidates["surface"]))
    hits = [p for p in proposed if p in planted]
    assert len(candidates) > 20
    assert len(hits) / len(proposed) >= 0.8, "most proposals are planted aliases"
    assert not any(planted[p]["in_am_alias"] for p in hits), "never re-propose an existing alias"
    wrong_lang = [p for p, lang in zip(proposed, candidates["lang"]) if p in planted and planted[p]["lang"] != lang]
    assert len(wrong_lang) <= max(2, len(hits) // 50), wrong_lang
    assert set(candidates["lang"]) <= LANGS - {"und"} and candidates["score"].between(0, 1).all()


def test_no_candidate_is_already_an_alias_after_normalization(small_world, tmp_path, embedding_cache):
    result = run(small_world, tmp_path, embedding_cache)
    candidates = result.output_for_node("alias_expansion_candidates")
    conn = sqlite3.connect(str(small_world))
    aliased = {(e, normalize_query(s)) for e, s in conn.execute("SELECT entity_id, surface FROM am_alias")}
    programs = {p for (p,) in conn.execute("SELECT program_id FROM programs")}
    conn.close()
    assert not set(zip(candidates["entity_id"], candidates["surface"])) & aliased
    assert set(candidates["entity_id"]) <= programs


def test_execute_writes_and_rerun_is_idempotent(small_world, tmp_path, embedding_cache):
    first_run = run(small_world, tmp_path, embedding_cache, execute=True)
    assert first_run.success
    first = alias_rows(small_world)
    assert len(first) == metadata(first_run, "alias_expansion_candidates")["dagster/row_count"] > 0
    assert set(first["status"]) == {"pending_review"} and set(first["source"]) == {"loop_e:low_confidence_queries"}
    assert {"requests", "sessions", "similarity_to_entity", "raw_forms"} <= set(json.loads(first["evidence_json"][0]))
    conn = sqlite3.connect(str(small_world))
    conn.execute(
        "UPDATE alias_candidates SET status = 'approved' WHERE candidate_id = ?", (int(first["candidate_id"][0]),)
    )
    conn.commit()
    conn.close()
    assert run(small_world, tmp_path, embedding_cache, execute=True).success
    second = alias_rows(small_world)
    assert list(zip(second["entity_id"], second["surface"])) == list(zip(first["entity_id"], first["surface"]))
    assert second.loc[second["candidate_id"] == first["candidate_id"][0], "status"].item() == "approved"


def test_rerun_of_an_unchanged_partition_embeds_nothing(small_world, tmp_path, embedding_cache):
    run(small_world, tmp_path, embedding_cache)
    again = run(small_world, tmp_path, embedding_cache)
    embedded = metadata(again, "alias_expansion_embeddings")
    assert embedded["texts_embedded"] == 0 and embedded["cache_hit_rate"] == 1.0


def test_unknown_entities_are_dropped(small_world, tmp_path, embedding_cache):
    conn = sqlite3.connect(str(small_world))
    conn.execute(
        "UPDATE query_log SET top1_program_id = 'P_GONE' WHERE id IN (SELECT id FROM query_log "
        "WHERE confidence < 0.5 AND result_count = 1 AND ts >= '2026-11-08' ORDER BY id LIMIT 50)"
    )
    conn.commit()
    conn.close()
    result = run(small_world, tmp_path, embedding_cache)
    assert result.success
    assert metadata(result, "alias_expansion_surfaces")["unknown_entity_rows"] > 0
    assert "P_GONE" not in set(result.output_for_node("alias_expansion_candidates")["entity_id"])
