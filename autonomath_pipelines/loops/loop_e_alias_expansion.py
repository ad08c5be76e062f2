"""Loop E — multi-language alias expansion: how customers name a program when the service is unsure.

query_log (14 days: confidence < 0.5, results pointing to one program) → alias_expansion_snapshot →
alias_expansion_surfaces (normalized surface forms per program, language by script, minus what
am_alias already has) → alias_expansion_embeddings (cached; similarity to the program's name and
aliases) → alias_expansion_clusters (weighted DBSCAN per program: lone, rare forms stay noise) →
alias_expansion_candidates (scored by frequency, sessions, similarity) → alias_candidates_published.
"""

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from autonomath_pipelines.catalog import loop_spec
from autonomath_pipelines.contract.timestamps import iso_utc, utc_now
from autonomath_pipelines.lib import badrows, gates
from autonomath_pipelines.lib.langdetect import LANGS, detect_lang
from autonomath_pipelines.lib.textnorm import MAX_QUERY_CHARS, clip, normalize_query
from autonomath_pipelines.loops.common import (
    LoopDefinition,
    asset_defaults,
    evidence_json,
    frame_metadata,
    gate_results,
    gate_specs,
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
    with_vectors,
)
from autonomath_pipelines.resources import AutonomathDatabase, EmbeddingModel

SPEC = loop_spec("loop_e_alias_expansion")
COMMON = asset_defaults(SPEC)
MAX_CANDIDATES = 1000
PROPOSABLE_LANGS = frozenset(LANGS - {"und"})
#: Existing aliases per program used as the reference for similarity (first by alias_id).
REFERENCE_ALIASES_PER_PROGRAM = 3
SOURCE = "loop_e:low_confidence_queries"


class AliasClusteringConfig(ClusteringConfig):
    """eps None (default): chosen once from all the window's surfaces (k-NN distances), then each
    program's surfaces are clustered on their own with it; ``eps: 0.2`` restores the old fixed value."""

    min_samples: int = 2


class CandidatesConfig(dg.Config):
    max_candidates: int = Field(default=500, description=f"At most this many per run (≤ {MAX_CANDIDATES}).")
    weight_frequency: float = 0.5
    weight_sessions: float = 0.2
    weight_similarity: float = 0.3


#: The columns loop E reads must be well-formed; other rows are skipped and counted (lib/badrows.py).
QUERY_RULES = badrows.TableRules(
    "query_log",
    "id",
    (
        badrows.timestamp("ts"),
        badrows.text("session_id"),
        badrows.text("query_text", max_chars=MAX_QUERY_CHARS),
        badrows.text("top1_program_id", nullable=True),
        badrows.number("confidence", lo=0.0, hi=1.0),
        badrows.number("result_count", lo=0, integer=True),
    ),
)


@dg.asset(name="alias_expansion_snapshot", deps=["query_log"], kinds={"sqlite", "parquet"}, **COMMON)
def alias_expansion_snapshot(
    context: dg.AssetExecutionContext, config: LowConfidenceSplit, autonomath_db: AutonomathDatabase
) -> dg.MaterializeResult[pd.DataFrame]:
    """Queries of the last 14 days answered with low confidence but pointing to a single program.
    Malformed rows are skipped and counted."""
    autonomath_db.preflight(SPEC.reads, context=SPEC.loop_id)
    window = window_for(context, SPEC)
    snapshot, bad = badrows.read_checked(
        autonomath_db.read_only,
        "SELECT id, ts, session_id, query_text, top1_program_id, confidence, result_count FROM query_log "
        "WHERE ts >= ? AND ts < ? AND confidence < ? AND top1_program_id IS NOT NULL "
        f"AND result_count BETWEEN 1 AND ? AND {QUERY_RULES.good('query_log')} ORDER BY id",
        (window.start_iso, window.end_iso, config.low_confidence_below, config.single_program_max_results),
        table="query_log",
        key="id",
    )
    with autonomath_db.read_only() as conn:
        bad.extend(badrows.count_bad(conn, QUERY_RULES, "ts >= ? AND ts < ?", (window.start_iso, window.end_iso)))
    return snapshot_result(
        context,
        snapshot,
        ["ts", "query_text", "top1_program_id", "confidence"],
        bad,
        **window.metadata(),
    )


SURFACE_COLUMNS = [
    "entity_id",
    "surface",
    "lang",
    "requests",
    "sessions",
    "mean_confidence",
    "raw_forms",
    "program_name",
    "weight",
]


@dg.asset(name="alias_expansion_surfaces", deps=["programs", "am_alias"], kinds={"sqlite", "parquet"}, **COMMON)
def alias_expansion_surfaces(
    context: dg.AssetExecutionContext, autonomath_db: AutonomathDatabase, alias_expansion_snapshot: pd.DataFrame
) -> dg.MaterializeResult[pd.DataFrame]:
    """Normalized surface forms per program with their language, minus the program's name and every
    surface am_alias already has for it (compared after normalization)."""
    rows = alias_expansion_snapshot.assign(
        surface=alias_expansion_snapshot["query_text"].astype(str).map(normalize_query)
    )
    rows = rows[rows["surface"] != ""]
    entities = sorted(rows["top1_program_id"].unique()) if len(rows) else []
    programs, aliases, bad = _entity_reference(autonomath_db, entities)
    known = rows["top1_program_id"].isin(programs.keys())
    unknown = rows[~known]
    bad.add(
        "query_log",
        "top1_program_id",
        "points to no readable programs row",
        "reference",
        len(unknown),
        unknown["id"].head(badrows.EXAMPLES) if "id" in unknown.columns else (),
    )
    surfaces = (
        (
            rows[known]
            .rename(columns={"top1_program_id": "entity_id"})
            .groupby(["entity_id", "surface"], sort=True)
            .agg(
                requests=("ts", "size"),
                sessions=("session_id", "nunique"),
                mean_confidence=("confidence", "mean"),
                raw_forms=("query_text", lambda forms: [clip(f, 200) for f in sorted(set(forms))[:3]]),
            )
            .reset_index()
        )
        if known.any()
        else pd.DataFrame(columns=SURFACE_COLUMNS)
    )
    existing = {(entity, normalize_query(surface)) for entity, surface in aliases}
    existing |= {(entity, normalize_query(name)) for entity, name in programs.items()}
    fresh = ~pd.Series(
        [pair in existing for pair in zip(surfaces["entity_id"], surfaces["surface"])], index=surfaces.index, dtype=bool
    )
    surfaces = surfaces[fresh].copy()
    surfaces["lang"] = surfaces["surface"].map(detect_lang)
    surfaces["program_name"] = surfaces["entity_id"].map(programs)
    surfaces["weight"] = surfaces["requests"].astype(float)
    surfaces = surfaces[SURFACE_COLUMNS].reset_index(drop=True)
    return snapshot_result(
        context,
        surfaces,
        ["entity_id", "surface", "lang", "requests"],
        bad,
        unknown_entity_rows=int((~known).sum()),
        already_aliased=int((~fresh).sum()),
        programs_touched=int(surfaces["entity_id"].nunique()) if len(surfaces) else 0,
    )


def _entity_reference(
    database: AutonomathDatabase, entities: list[str]
) -> tuple[dict[str, str], list[tuple[str, str]], badrows.BadRows]:
    """Names of the programs that exist among ``entities``, and their am_alias surfaces. A program
    whose name (or an alias whose surface) is not readable text is left out and reported."""
    programs: dict[str, str] = {}
    aliases: list[tuple[str, str]] = []
    bad = badrows.BadRows()
    with database.read_only() as conn:
        for start in range(0, len(entities), 500):
            chunk = entities[start : start + 500]
            marks = ",".join("?" * len(chunk))
            programs.update(
                badrows.checked_rows(
                    conn,
                    f"SELECT program_id, name FROM programs WHERE program_id IN ({marks})",
                    chunk,
                    table="programs",
                    bad=bad,
                )
            )
            aliases += [
                (entity, surface)
                for _, entity, surface in badrows.checked_rows(
                    conn,
                    f"SELECT alias_id, entity_id, surface FROM am_alias WHERE entity_id IN ({marks}) "
                    "ORDER BY entity_id, alias_id",
                    chunk,
                    table="am_alias",
                    bad=bad,
                )
            ]
    return programs, aliases, bad


@dg.asset(name="alias_expansion_embeddings", kinds={"pytorch", "parquet"}, **COMMON)
def alias_expansion_embeddings(
    autonomath_db: AutonomathDatabase, embeddings: EmbeddingModel, alias_expansion_surfaces: pd.DataFrame
) -> dg.MaterializeResult[pd.DataFrame]:
    """A unit vector per surface (shared cache), and its similarity to what the program is already called:
    its name and first aliases."""
    surfaces = alias_expansion_surfaces
    vectors, metadata = embed_texts(embeddings, surfaces["surface"].tolist())
    programs, aliases, _ = _entity_reference(
        autonomath_db, sorted(surfaces["entity_id"].unique()) if len(surfaces) else []
    )
    references: dict[str, list[str]] = {entity: [normalize_query(name)] for entity, name in programs.items()}
    for entity, surface in aliases:
        if len(references[entity]) <= REFERENCE_ALIASES_PER_PROGRAM:
            references[entity].append(normalize_query(surface))
    reference_texts = sorted({t for texts in references.values() for t in texts})
    reference_vectors, reference_metadata = embed_texts(embeddings, reference_texts)
    index = {t: i for i, t in enumerate(reference_texts)}
    similarity = np.array(
        [
            float(np.max(reference_vectors[[index[t] for t in references[entity]]] @ vector))
            for entity, vector in zip(surfaces["entity_id"], vectors)
        ],
        dtype=float,
    )
    frame = with_vectors(surfaces[["entity_id", "surface", "weight"]], vectors).assign(similarity_to_entity=similarity)
    metadata["reference_texts"] = len(reference_texts)
    metadata["texts_embedded"] += reference_metadata["texts_embedded"]
    metadata["cache_hits"] += reference_metadata["cache_hits"]
    total = metadata["texts_embedded"] + metadata["cache_hits"]
    metadata["cache_hit_rate"] = metadata["cache_hits"] / total if total else 1.0
    return dg.MaterializeResult(value=frame, metadata={"dagster/row_count": len(frame), **metadata})


@dg.asset(name="alias_expansion_clusters", kinds={"scikitlearn", "parquet"}, **COMMON)
def alias_expansion_clusters(
    config: AliasClusteringConfig, alias_expansion_embeddings: pd.DataFrame
) -> dg.MaterializeResult[pd.DataFrame]:
    """Each program's surface forms clustered on their own (weighted DBSCAN): a form used once, far from
    any other form of the program, stays noise (-1) and is not proposed."""
    clustered, cluster_metadata = cluster_with_config(alias_expansion_embeddings, config, group_by="entity_id")
    return dg.MaterializeResult(
        value=clustered.drop(columns=["vector"]),
        metadata={"dagster/row_count": len(clustered), **clustering_metadata(clustered), **cluster_metadata},
    )


def candidate_gates(known_entities: frozenset, aliased: frozenset) -> tuple[gates.Gate, ...]:
    return (
        gates.all_pending_review(),
        gates.values_in("entity_id", known_entities, "entity_exists", "Every candidate names a program that exists."),
        gates.pairs_absent(
            ("entity_id", "surface"),
            aliased,
            "not_in_am_alias",
            "No candidate is already an alias of its program (after normalization).",
        ),
        gates.values_in(
            "lang", PROPOSABLE_LANGS, "valid_lang", f"Language codes are among {sorted(PROPOSABLE_LANGS)}."
        ),
        gates.row_cap(MAX_CANDIDATES),
        gates.non_empty_text("surface"),
    )


@dg.asset(
    name="alias_expansion_candidates",
    kinds={"sqlite", "parquet"},
    check_specs=gate_specs("alias_expansion_candidates", candidate_gates(frozenset(), frozenset())),
    **COMMON,
)
def alias_expansion_candidates(
    context: dg.AssetExecutionContext,
    config: CandidatesConfig,
    autonomath_db: AutonomathDatabase,
    embeddings: EmbeddingModel,
    alias_expansion_surfaces: pd.DataFrame,
    alias_expansion_clusters: pd.DataFrame,
):
    """Alias candidates: clustered surface forms scored by frequency, sessions and similarity to the
    program's name and aliases (each in [0, 1], weights in config). Blocking gates before publishing."""
    if config.max_candidates > MAX_CANDIDATES:
        raise ValueError(f"max_candidates {config.max_candidates} exceeds the per-run cap of {MAX_CANDIDATES}")
    window = window_for(context, SPEC)
    frame = alias_expansion_clusters.merge(alias_expansion_surfaces, on=["entity_id", "surface", "weight"], how="left")
    frame = frame[(frame["cluster"] != -1) & frame["lang"].isin(PROPOSABLE_LANGS)].copy()
    if len(frame):
        frequency = np.log1p(frame["requests"]) / np.log1p(frame["requests"].max())
        sessions = np.log1p(frame["sessions"]) / np.log1p(frame["sessions"].max())
        similarity = frame["similarity_to_entity"].clip(0, 1)
        frame["score"] = (
            config.weight_frequency * frequency
            + config.weight_sessions * sessions
            + config.weight_similarity * similarity
        ) / (config.weight_frequency + config.weight_sessions + config.weight_similarity)
    else:
        frame["score"] = pd.Series(dtype=float)
    frame = (
        frame.sort_values(["score", "entity_id", "surface"], ascending=[False, True, True], kind="mergesort")
        .head(config.max_candidates)
        .reset_index(drop=True)
    )
    candidates = frame.assign(
        source=SOURCE,
        status="pending_review",
        created_at=iso_utc(utc_now()),
        evidence_json=[
            evidence_json(
                requests=int(r.requests),
                sessions=int(r.sessions),
                mean_confidence=round(float(r.mean_confidence), 4),
                raw_forms=list(r.raw_forms),
                similarity_to_entity=round(float(r.similarity_to_entity), 4),
                cluster=int(r.cluster),
                program_name=r.program_name,
            )
            for r in frame.itertuples()
        ],
        **provenance(context, SPEC, window, model_name=embeddings.model),
    )
    entities = sorted(candidates["entity_id"].unique()) if len(candidates) else []
    programs, aliases, _ = _entity_reference(autonomath_db, entities)
    run_gates = candidate_gates(frozenset(programs), frozenset((e, normalize_query(s)) for e, s in aliases))
    return dg.MaterializeResult(
        value=candidates,
        metadata=frame_metadata(
            candidates,
            ["entity_id", "surface", "lang", "score"],
            candidates_proposed=len(candidates),
            **{
                f"lang_{lang.replace('-', '_')}": int((candidates["lang"] == lang).sum())
                for lang in sorted(PROPOSABLE_LANGS)
            },
        ),
        check_results=gate_results("alias_expansion_candidates", run_gates, candidates),
    )


alias_candidates_published = published_asset(
    SPEC,
    plan=review_queue(SPEC, ["entity_id", "surface"]),
    description="`alias_candidates` rows of this week, pending operator review (dry run: nothing written).\n\n"
    "Keyed by (entity, surface): a surface proposed again updates its evidence, never its review status.",
)

LOOP = LoopDefinition.of(
    SPEC,
    alias_expansion_snapshot,
    alias_expansion_surfaces,
    alias_expansion_embeddings,
    alias_expansion_clusters,
    alias_expansion_candidates,
    alias_candidates_published,
)
