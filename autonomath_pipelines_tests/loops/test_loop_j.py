"""Loop J end to end on the small demo world, through Dagster."""

import shutil
from pathlib import Path

import dagster as dg
import pandas as pd

from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.demo import load_truth
from autonomath_pipelines.lib import gold
from autonomath_pipelines.lib.textnorm import normalize_query
from autonomath_pipelines.loops.common import source_specs
from autonomath_pipelines.loops.loop_j_gold_expansion import LOOP
from autonomath_pipelines.resources import LoopSettings
from autonomath_pipelines_tests.loops.harness import check_outcomes, loop_resources, materialized, metadata, sha256

SHIPPED_GOLD = Path(__file__).parents[2] / "evals" / "gold.yaml"
OCTOBER = "2026-10-01"
#: October's window: the 30 days ending 2026-11-01 00:00 JST.
OCTOBER_WINDOW = ("2026-10-01T15:00:00Z", "2026-10-31T15:00:00Z")


def repo(tmp_path, with_gold=True) -> Path:
    root = tmp_path / "repo"
    (root / "evals").mkdir(parents=True, exist_ok=True)
    if with_gold:
        shutil.copyfile(SHIPPED_GOLD, root / "evals" / "gold.yaml")
    return root


def run(db, tmp_path, partition=OCTOBER, *, execute=False, run_config=None):
    resources = loop_resources(db, tmp_path, execute=execute, loop_id=LOOP.spec.loop_id)
    resources["loop_settings"] = LoopSettings(
        execute_loops=[LOOP.spec.loop_id] if execute else [],
        reports_dir=str(tmp_path / "reports"),
        repo_root=str(tmp_path / "repo"),
    )
    return dg.materialize(
        [*source_specs(), *LOOP.assets],
        selection=LOOP.assets,
        partition_key=partition,
        resources=resources,
        run_config=run_config,
        raise_on_error=False,
    )


def candidate_file(tmp_path, month="2026-10") -> Path:
    return tmp_path / "repo" / "evals" / "_candidates" / f"gold_proposed_{month}.yaml"


def read_sql(sql, conn, params=()) -> pd.DataFrame:
    cursor = conn.execute(sql, params)
    return pd.DataFrame(cursor.fetchall(), columns=[d[0] for d in cursor.description])


def independent_rule(db, start, end, skip=frozenset()) -> list[tuple[str, str, int]]:
    """Loop J's rule recomputed straight from the database with pandas."""
    conn = sqlite3.connect(str(db))
    frame = read_sql(
        "SELECT query_text, session_id, top1_program_id FROM query_log WHERE ts >= ? AND ts < ? AND confidence >= 0.85",
        conn,
        params=(start, end),
    )
    conn.close()
    frame["q"] = frame["query_text"].map(normalize_query)
    per = frame.groupby("q").agg(
        n_prog=("top1_program_id", lambda s: s.nunique(dropna=False)),
        prog=("top1_program_id", "first"),
        sessions=("session_id", "nunique"),
    )
    per = per[(per["n_prog"] == 1) & per["prog"].notna() & (per["sessions"] >= 5) & ~per.index.isin(list(skip))]
    return sorted((q, p, int(s)) for q, p, s in zip(per.index, per["prog"], per["sessions"]))


def test_dry_run_writes_nothing(small_world, tmp_path):
    repo(tmp_path)
    before = sha256(small_world)
    result = run(small_world, tmp_path)
    assert result.success and sha256(small_world) == before
    assert all(check_outcomes(result).values()) and len(check_outcomes(result)) == 4  # 3 gates + window
    assert not (tmp_path / "repo" / "evals" / "_candidates").exists()
    published = metadata(result, "gold_candidates_published")
    assert published["dry_run"] is True and published["rows_would_write"] == 1
    assert metadata(result, "gold_expansion_candidates")["candidates_proposed"] > 100


def test_backfill_execute_skips_gold_and_rerun_is_idempotent(small_world, tmp_path):
    repo(tmp_path)
    # Two-month backfill, September then October. September's window (2026-09-01..10-01 JST) ends
    # before the small world's logs begin (10-07 JST): an empty window publishes nothing and fails.
    september = run(small_world, tmp_path, "2026-09-01", execute=True)
    assert not september.success and check_outcomes(september)["window_not_abnormally_small"] is False
    assert not candidate_file(tmp_path, "2026-09").exists()
    first = run(small_world, tmp_path, execute=True)
    assert first.success and "gold_candidates_published" in materialized(first)
    path = candidate_file(tmp_path)
    text = path.read_text(encoding="utf-8")
    parsed = gold.parse_gold(text, str(path))
    assert parsed.status == "pending_review" and {i.status for i in parsed.items} == {"pending_review"}
    assert parsed.provenance["partition_key"] == OCTOBER and parsed.provenance["run_id"] == first.run_id
    assert parsed.provenance["code_version"] and parsed.provenance["window_end_utc"] == OCTOBER_WINDOW[1]
    shipped = gold.load_gold(SHIPPED_GOLD).normalized_queries()
    expected = independent_rule(small_world, *OCTOBER_WINDOW, skip=shipped)
    assert sorted((i.query, i.expected_program_id, i.evidence["sessions"]) for i in parsed.items) == expected
    assert not {normalize_query(i.query) for i in parsed.items} & shipped
    skipped = metadata(first, "gold_expansion_candidates")["skipped_in_gold"]
    assert skipped == len(independent_rule(small_world, *OCTOBER_WINDOW)) - len(expected) > 30
    assert all(
        i.evidence["requests"] >= i.evidence["sessions"] and 0.85 <= i.evidence["mean_confidence"] <= 1
        for i in parsed.items
    )

    second = run(small_world, tmp_path, execute=True)
    assert second.success
    again = path.read_text(encoding="utf-8")
    assert again.replace(second.run_id, "RUN") == text.replace(first.run_id, "RUN")
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_missing_gold_proposes_everything_and_malformed_gold_fails_naming_the_file(small_world, tmp_path):
    root = repo(tmp_path, with_gold=False)
    result = run(small_world, tmp_path)
    assert result.success
    assert metadata(result, "gold_expansion_candidates")["candidates_proposed"] == len(
        independent_rule(small_world, *OCTOBER_WINDOW)
    )
    (root / "evals" / "gold.yaml").write_text("version: 1\nitems:\n- {id: a, query: q}\n", encoding="utf-8")
    broken = run(small_world, tmp_path, execute=True)
    assert not broken.success and "gold_candidates_published" not in materialized(broken)
    [failure] = [e for e in broken.all_events if e.is_step_failure]
    error, messages = failure.step_failure_data.error, []
    while error is not None:
        messages.append(error.message)
        error = error.cause
    assert any(str(root / "evals" / "gold.yaml") in m and "GoldFormatError" in m for m in messages), messages
    assert not candidate_file(tmp_path).exists()


def test_unknown_program_blocks_the_publish(small_world, tmp_path):
    repo(tmp_path)
    shipped = gold.load_gold(SHIPPED_GOLD).normalized_queries()
    proposed_raw = {q for q, _, _ in independent_rule(small_world, *OCTOBER_WINDOW, skip=shipped)}
    conn = sqlite3.connect(str(small_world))
    [victim] = [
        t
        for (t,) in conn.execute("SELECT DISTINCT query_text FROM query_log ORDER BY query_text")
        if normalize_query(t) in proposed_raw
    ][:1]
    conn.execute("UPDATE query_log SET top1_program_id = 'P_GONE' WHERE query_text = ?", (victim,))
    conn.commit()
    conn.close()
    result = run(small_world, tmp_path, execute=True)
    outcomes = check_outcomes(result)
    assert outcomes == {"yaml_parses": True, "not_in_gold_set": True, "program_ids_exist": False}
    assert "gold_candidates_published" not in materialized(result)
    assert not candidate_file(tmp_path).exists()


def test_score_against_truth(small_world, tmp_path):
    """Precision/recall of the rule against the world's truth (its last 30 days, ending 2026-11-21 00:00 JST)."""
    truth = {(t["query_text"], t["program_id"]) for t in load_truth(small_world)["gold_candidates"]}
    conn = sqlite3.connect(str(small_world))
    rows = read_sql(
        "SELECT query_text, session_id, top1_program_id, confidence FROM query_log "
        "WHERE ts >= '2026-10-21T15:00:00Z' AND ts < '2026-11-20T15:00:00Z'",
        conn,
    )
    conn.close()
    proposed = set(zip(*gold.propose_gold(rows)[["query", "expected_program_id"]].T.values))
    hits = len(proposed & truth)
    precision, recall = hits / len(proposed), hits / len(truth)
    print(f"loop J vs truth: proposed={len(proposed)} truth={len(truth)} precision={precision:.3f} recall={recall:.3f}")
    assert precision >= 0.95 and recall >= 0.95
