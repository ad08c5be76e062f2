"""Loop A — hallucination guard: recurring asks the service answers badly become guard candidates.

query_log (zero-result, and low-confidence answers that do not pin one program) + wrong-answer
customer_feedback → hallucination_guard_snapshot → hallucination_guard_texts (unique normalized
texts, weighted) → hallucination_guard_embeddings (cached) → hallucination_guard_clusters (weighted
DBSCAN, cosine) → hallucination_guard_candidates (one per cluster: the medoid as pattern; clusters
near an existing guard pattern or an earlier candidate dropped, and clusters the snapshot's sessions
show to be rephrasings of a covered or a better theme — lib/reformulations.py) →
hallucination_guard_candidates_published.

Low-confidence answers that point to a single program are a vocabulary gap, not a hallucination:
they are loop E's input and are left out here.
"""

import json
from typing import Literal

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from autonomath_pipelines.catalog import loop_spec
from autonomath_pipelines.contract.timestamps import iso_utc, utc_now
from autonomath_pipelines.lib import badrows, gates
from autonomath_pipelines.lib.clustering import summarize_clusters
from autonomath_pipelines.lib.gates import Gate, GateResult
from autonomath_pipelines.lib.reformulations import select_themes, session_links
from autonomath_pipelines.lib.suspect_texts import suspect_texts
from autonomath_pipelines.lib.textnorm import MAX_QUERY_CHARS, clip, normalize_query
from autonomath_pipelines.loops.common import (
    LoopDefinition,
    asset_defaults,
    bad_rows_metadata,
    evidence_json,
    frame_metadata,
    gate_results,
    gate_specs,
    log_bad_rows,
    provenance,
    published_asset,
    review_queue,
    snapshot_result,
    window_for,
)
from autonomath_pipelines.loops.text_clustering import (
    ClusteringConfig,
    LowConfidenceSplit,
    cluster_with_config,
    clustering_metadata,
    embed_texts,
    stack_vectors,
    with_vectors,
)
from autonomath_pipelines.resources import AutonomathDatabase, EmbeddingModel

SPEC = loop_spec("loop_a_hallucination_guard")
COMMON = asset_defaults(SPEC)
MAX_CANDIDATES = 50
#: Earlier candidates in these states suppress a new one for the same theme.
BLOCKING_STATUSES = ("pending_review", "approved", "rejected", "promoted")


class SnapshotConfig(LowConfidenceSplit):
    lookback_days: int | None = Field(
        default=None, description="Read this many days up to the partition end instead of the partition week."
    )


class TextsConfig(dg.Config):
    feedback_weight: float = Field(
        default=3.0,
        description="Weight of one wrong-answer report vs one request: a customer took the time to flag it.",
    )
    min_suspect_share: float = Field(
        default=0.5,
        description="Keep a text only if at least this share of its "
        "requests in the window was answered badly (or it was only reported).",
    )


class GuardClusteringConfig(ClusteringConfig):
    """Average linkage cut at the window's median k-NN distance (k from ``min_samples``): asks that
    share their nouns but differ in the verb are not chained together (the real-data eval: purity
    ≥ 0.85 at ≤ 50 % noise on English and Japanese intent sets, with either model). ``algorithm:
    dbscan`` with ``eps_method: knee`` and the chaining guard is the density alternative; ``eps: 0.25``
    the old demo-tuned value, as an override."""

    min_samples: int = 8
    algorithm: Literal["dbscan", "hdbscan", "linkage"] = "linkage"
    eps_method: Literal["quantile", "knee"] = "quantile"
    guard: bool = False


class CandidatesConfig(dg.Config):
    min_cluster_size: float = Field(
        default=12.0,
        description="A theme needs at least this weight (requests + weighted reports) to become a candidate.",
    )
    max_candidates: int = Field(default=20, description="At most this many candidates per run (≤ 50).")
    near_guard_similarity: float = Field(
        default=0.85,
        description="A medoid at least this similar to an existing "
        "guard pattern or earlier candidate is already covered.",
    )
    min_shared_sessions: int = Field(
        default=3, ge=1, description="Two themes asked in at least this many same sessions may be one ask rephrased ..."
    )
    max_reformulation_p: float = Field(
        default=0.005,
        gt=0.0,
        le=1.0,
        description="... when so many shared sessions would have this probability or less by chance (Poisson).",
    )


# ---------------------------------------------------------------------------------------- assets

#: The columns loop A reads must be well-formed; other rows are skipped and counted (lib/badrows.py).
QUERY_RULES = badrows.TableRules(
    "query_log",
    "id",
    (
        badrows.timestamp("ts"),
        badrows.text("session_id"),
        badrows.text("query_text", max_chars=MAX_QUERY_CHARS),
        badrows.number("confidence", lo=0.0, hi=1.0),
        badrows.number("result_count", lo=0, integer=True),
    ),
)
FEEDBACK_RULES = badrows.TableRules(
    "customer_feedback",
    "id",
    (
        badrows.timestamp("ts"),
        badrows.text("session_id", nullable=True),
        badrows.text("query_text", nullable=True, max_chars=MAX_QUERY_CHARS),
        badrows.text("comment", nullable=True),
    ),
)
#: Longest customer comment quoted in a candidate's evidence.
COMMENT_CHARS = 300


def suspect_queries_sql(good_query: str) -> str:
    """The window's suspect `query_log` rows, each with how often its text was asked in the window.

    One pass over the window whatever the planner chooses: the per-text count is a window function
    over the window's rows, not a join back to `query_log` (which SQLite may run as a nested loop
    that re-searches the window once per distinct text: quadratic at production scale, issue 19).
    """
    return (
        "WITH win AS MATERIALIZED (SELECT id, ts, session_id, query_text, result_count, confidence, "
        "  (result_count = 0 OR (confidence < :low AND result_count > :single)) AS suspect FROM query_log "
        f"  WHERE ts >= :start AND ts < :end AND {good_query} AND query_text IS NOT NULL), "
        "counted AS (SELECT *, COUNT(*) OVER (PARTITION BY query_text) AS text_requests FROM win) "
        "SELECT 'query_log' AS source, id, ts, session_id, query_text AS text, result_count, confidence, "
        "NULL AS comment, text_requests FROM counted WHERE suspect ORDER BY id"
    )


@dg.asset(
    name="hallucination_guard_snapshot", deps=["query_log", "customer_feedback"], kinds={"sqlite", "parquet"}, **COMMON
)
def hallucination_guard_snapshot(
    context: dg.AssetExecutionContext, config: SnapshotConfig, autonomath_db: AutonomathDatabase
) -> dg.MaterializeResult[pd.DataFrame]:
    """Suspect asks of the window: zero-result and unanchored low-confidence queries, and the queries
    customers flagged as wrong answers (with their comments). Malformed rows are skipped and counted."""
    autonomath_db.preflight(SPEC.reads, context=SPEC.loop_id)
    window = window_for(context, SPEC, config.lookback_days)
    good_query = QUERY_RULES.good("query_log")
    # Each suspect row carries how often its text was asked in the window at all: a text answered
    # badly once in a thousand requests is noise on a real program, not a hallucination theme.
    queries, bad = badrows.read_checked(
        autonomath_db.read_only,
        suspect_queries_sql(good_query),
        {
            "start": window.start_iso,
            "end": window.end_iso,
            "low": config.low_confidence_below,
            "single": config.single_program_max_results,
        },
        table="query_log",
        key="id",
    )
    feedback, bad = badrows.read_checked(
        autonomath_db.read_only,
        "SELECT 'wrong_answer_feedback' AS source, id, ts, session_id, query_text AS text, NULL AS result_count, "
        "NULL AS confidence, comment, NULL AS text_requests FROM customer_feedback WHERE wrong_answer = 1 "
        f"AND ts >= ? AND ts < ? AND {FEEDBACK_RULES.good('customer_feedback')} AND query_text IS NOT NULL ORDER BY id",
        (window.start_iso, window.end_iso),
        table="customer_feedback",
        key="id",
        bad=bad,
    )
    with autonomath_db.read_only() as conn:
        window_sql, params = "ts >= ? AND ts < ?", (window.start_iso, window.end_iso)
        bad.extend(badrows.count_bad(conn, QUERY_RULES, window_sql, params))
        bad.extend(badrows.count_bad(conn, FEEDBACK_RULES, window_sql, params))
        reports_without_text = conn.execute(
            "SELECT COUNT(*) FROM customer_feedback WHERE wrong_answer = 1 AND ts >= ? AND ts < ? "
            "AND query_text IS NULL",
            params,
        ).fetchone()[0]
    snapshot = pd.concat([queries, feedback], ignore_index=True) if len(feedback) else queries
    return snapshot_result(
        context,
        snapshot,
        ["source", "ts", "text", "result_count"],
        bad,
        **window.metadata(),
        zero_result_rows=int((queries["result_count"] == 0).sum()) if len(queries) else 0,
        wrong_answer_reports=len(feedback),
        wrong_answer_reports_without_text=int(reports_without_text),
    )


@dg.asset(name="hallucination_guard_texts", kinds={"pandas", "parquet"}, **COMMON)
def hallucination_guard_texts(
    config: TextsConfig, hallucination_guard_snapshot: pd.DataFrame
) -> dg.MaterializeResult[pd.DataFrame]:
    """Unique normalized suspect texts with their weight (requests + weighted wrong-answer reports);
    a text usually answered well is left out (``lib/suspect_texts.py``)."""
    texts, dropped = suspect_texts(
        hallucination_guard_snapshot, feedback_weight=config.feedback_weight, min_suspect_share=config.min_suspect_share
    )
    return dg.MaterializeResult(
        value=texts,
        metadata=frame_metadata(
            texts,
            ["text", "requests", "text_requests", "reports", "weight"],
            texts_mostly_answered_well=dropped,
            suspect_requests=int(texts["requests"].sum()) if len(texts) else 0,
        ),
    )


@dg.asset(name="hallucination_guard_embeddings", kinds={"pytorch", "parquet"}, **COMMON)
def hallucination_guard_embeddings(
    embeddings: EmbeddingModel, hallucination_guard_texts: pd.DataFrame
) -> dg.MaterializeResult[pd.DataFrame]:
    """One unit vector per suspect text, from the shared embedding cache (a text is embedded once, ever)."""
    vectors, metadata = embed_texts(embeddings, hallucination_guard_texts["text"].tolist())
    frame = with_vectors(hallucination_guard_texts[["text", "weight"]], vectors)
    return dg.MaterializeResult(value=frame, metadata={"dagster/row_count": len(frame), **metadata})


@dg.asset(name="hallucination_guard_clusters", kinds={"scikitlearn", "parquet"}, **COMMON)
def hallucination_guard_clusters(
    config: GuardClusteringConfig, hallucination_guard_embeddings: pd.DataFrame
) -> dg.MaterializeResult[pd.DataFrame]:
    """Each suspect text's theme: weighted DBSCAN over cosine distance with eps from the window's own
    neighbour distances, then the chaining guard; noise stays noise (-1)."""
    clustered, cluster_metadata = cluster_with_config(hallucination_guard_embeddings, config)
    summary = (
        clustered.groupby("cluster")["weight"].agg(["count", "sum"]).reset_index() if len(clustered) else clustered
    )
    return dg.MaterializeResult(
        value=clustered,
        metadata={
            "dagster/row_count": len(clustered),
            **clustering_metadata(clustered),
            **cluster_metadata,
            "preview": frame_metadata(summary.rename(columns={"count": "texts", "sum": "weight"}))["preview"],
        },
    )


def _evidence_examples(evidence_json: object) -> list[str]:
    """The example asks recorded in a candidate's evidence (none when it is not the JSON written here)."""
    try:
        examples = json.loads(evidence_json).get("examples", []) if isinstance(evidence_json, str) else []
    except (ValueError, AttributeError):
        return []
    return [e for e in examples if isinstance(e, str)] if isinstance(examples, list) else []


def _earlier_patterns(database: AutonomathDatabase, partition_key: str) -> tuple[list[str], badrows.BadRows]:
    """Guard patterns in production, and candidates other runs already proposed (any live state).

    A pattern that is not text, not UTF-8 or empty after normalization is skipped and reported."""
    bad = badrows.BadRows()
    with badrows.checked_connection(database.read_only) as conn:
        rows = badrows.checked_rows(
            conn, "SELECT id, pattern FROM hallucination_guard ORDER BY id", table="hallucination_guard", bad=bad
        )
        has_candidates = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", ("hallucination_guard_candidates",)
        ).fetchone()
        candidate_rows = []
        if has_candidates:
            marks = ",".join("?" * len(BLOCKING_STATUSES))
            candidate_rows = badrows.checked_rows(
                conn,
                "SELECT candidate_id, pattern, evidence_json FROM hallucination_guard_candidates "
                f"WHERE partition_key != ? AND status IN ({marks}) ORDER BY candidate_id",
                (partition_key, *BLOCKING_STATUSES),
                table="hallucination_guard_candidates",
                bad=bad,
            )
    # An earlier candidate stands for its whole theme: the example asks of its cluster count as well,
    # so a later week's cluster of other asks of that theme (a finer cluster, other wording) is covered.
    examples = [(row_id, text) for row_id, _, evidence in candidate_rows for text in _evidence_examples(evidence)]
    candidate_rows = [(row_id, pattern) for row_id, pattern, _ in candidate_rows] + examples
    patterns = []
    for table, found in (("hallucination_guard", rows), ("hallucination_guard_candidates", candidate_rows)):
        for row_id, pattern in found:
            if normalize_query(pattern):
                patterns.append(pattern)
            else:
                bad.add(table, "pattern", "empty after normalization", "text", 1, [row_id])
    return patterns, bad


def _none_near_existing(frame: pd.DataFrame) -> GateResult:
    near = int((frame["nearest_existing_similarity"] >= frame["near_threshold"]).sum()) if len(frame) else 0
    return GateResult(
        near == 0,
        f"{near} candidates as similar as the run's threshold to an existing pattern",
        {"near_existing": near},
    )


CANDIDATE_GATES = (
    gates.all_pending_review(),
    Gate(
        "none_near_existing_pattern",
        "No candidate repeats a guard pattern or an earlier candidate.",
        _none_near_existing,
    ),
    gates.row_cap(MAX_CANDIDATES),
    gates.non_empty_text("pattern"),
    gates.patterns_carry_content("pattern"),
)


@dg.asset(
    name="hallucination_guard_candidates",
    kinds={"sqlite", "parquet"},
    check_specs=gate_specs("hallucination_guard_candidates", CANDIDATE_GATES),
    **COMMON,
)
def hallucination_guard_candidates(
    context: dg.AssetExecutionContext,
    config: CandidatesConfig,
    autonomath_db: AutonomathDatabase,
    embeddings: EmbeddingModel,
    hallucination_guard_snapshot: pd.DataFrame,
    hallucination_guard_texts: pd.DataFrame,
    hallucination_guard_clusters: pd.DataFrame,
):
    """One guard candidate per theme (the cluster's medoid ask), ranked by size × density. A theme is
    dropped when it is covered (its medoid near a guard pattern or an earlier candidate, or customers
    rephrase it in the same sessions as a covered theme) or repeats a better theme of this run (near
    it, or rephrased with it; its texts are then listed in that candidate's evidence). Blocking gates
    before publishing."""
    if config.max_candidates > MAX_CANDIDATES:
        raise ValueError(f"max_candidates {config.max_candidates} exceeds the per-run cap of {MAX_CANDIDATES}")
    window = window_for(context, SPEC)
    clustered = hallucination_guard_clusters.merge(
        hallucination_guard_texts[["text", "requests", "reports", "sessions", "comments"]], on="text", how="left"
    )
    vectors = stack_vectors(clustered)
    summaries = [
        s
        for s in summarize_clusters(
            clustered["text"].tolist(),
            vectors,
            clustered["weight"].to_numpy(float),
            clustered["cluster"].to_numpy(),
            n_examples=5,
        )
        if s.size >= config.min_cluster_size
    ]
    # A theme whose medoid is punctuation or a stop-word ("*", "and") is no pattern: drop it before
    # the candidate slots are filled, so it never takes a real theme's place.
    contentless = [s for s in summaries if gates.pattern_content_problem(s.medoid_text)]
    summaries = [s for s in summaries if not gates.pattern_content_problem(s.medoid_text)]
    existing, bad = _earlier_patterns(autonomath_db, window.partition_key)
    log_bad_rows(context, bad)
    existing_vectors, _ = embed_texts(embeddings, existing)
    theme_of = dict(zip(clustered["text"], clustered["cluster"].astype(int)))
    asked = hallucination_guard_snapshot["text"].astype(str).map(normalize_query).map(theme_of)
    links = session_links(
        hallucination_guard_snapshot["session_id"].tolist(),
        asked.fillna(-1).astype(int).tolist(),
        min_shared_sessions=config.min_shared_sessions,
        max_p_value=config.max_reformulation_p,
    )
    decisions = select_themes(
        [s.label for s in summaries],
        [s.medoid_text for s in summaries],
        vectors[[s.medoid for s in summaries]] if summaries else np.zeros((0, 0)),
        [normalize_query(p) for p in existing],
        existing_vectors,
        links,
        near_similarity=config.near_guard_similarity,
        max_candidates=config.max_candidates,
    )
    medoid_text = {s.label: s.medoid_text for s in summaries}
    created_at = iso_utc(utc_now())
    rows = []
    for summary, decision in zip(summaries, decisions):
        if decision.decision != "proposed":
            continue
        members = clustered.iloc[list(summary.members)]
        rows.append(
            {
                "pattern": summary.medoid_text,
                "label": summary.label_text,
                "cluster_size": int(round(summary.size)),
                "score": float(summary.score),
                "nearest_existing_similarity": decision.nearest_existing_similarity,
                "evidence_json": evidence_json(
                    cluster=int(summary.label),
                    texts=int(summary.n_texts),
                    requests=int(members["requests"].sum()),
                    wrong_answer_reports=int(members["reports"].sum()),
                    sessions=int(members["sessions"].sum()),
                    density=round(float(summary.density), 4),
                    examples=list(summary.examples),
                    customer_comments=[clip(c, COMMENT_CHARS) for cs in members["comments"] for c in cs][:3],
                    nearest_existing_similarity=round(decision.nearest_existing_similarity, 4),
                    rephrased_as=[medoid_text[t] for t in decision.reformulations],
                ),
            }
        )
    proposals = pd.DataFrame(
        rows, columns=["pattern", "label", "cluster_size", "score", "nearest_existing_similarity", "evidence_json"]
    )
    proposals = proposals.sort_values(["score", "pattern"], ascending=[False, True], kind="mergesort").reset_index(
        drop=True
    )
    candidates = proposals.assign(
        status="pending_review",
        created_at=created_at,
        near_threshold=config.near_guard_similarity,
        **provenance(context, SPEC, window, model_name=embeddings.model),
    )
    outcome = pd.Series([d.decision for d in decisions], dtype=object)
    why = pd.Series([d.reason for d in decisions if d.decision in ("covered", "duplicate")], dtype=object)
    return dg.MaterializeResult(
        value=candidates,
        metadata=frame_metadata(
            candidates,
            ["pattern", "label", "cluster_size", "score"],
            candidates_proposed=len(candidates),
            clusters_large_enough=len(summaries),
            param_min_cluster_size=float(config.min_cluster_size),
            clusters_already_covered=int((outcome == "covered").sum()),
            clusters_covered_by_sessions=int(why.str.contains("same sessions as a covered").sum()),
            clusters_repeating_a_candidate=int((outcome == "duplicate").sum()),
            clusters_over_cap=int((outcome == "over_cap").sum()),
            clusters_without_content=len(contentless),
            reformulation_links=len(links),
            existing_patterns=len(existing),
            **bad_rows_metadata(bad),
        ),
        check_results=gate_results("hallucination_guard_candidates", CANDIDATE_GATES, candidates),
    )


hallucination_guard_candidates_published = published_asset(
    SPEC,
    plan=review_queue(SPEC, ["partition_key", "pattern"]),
    description="`hallucination_guard_candidates` rows of this week, pending operator review (dry run: nothing "
    "written).\n\nRe-running replaces the week's still-pending rows; reviewed rows keep their status.",
)

LOOP = LoopDefinition.of(
    SPEC,
    hallucination_guard_snapshot,
    hallucination_guard_texts,
    hallucination_guard_embeddings,
    hallucination_guard_clusters,
    hallucination_guard_candidates,
    hallucination_guard_candidates_published,
)
