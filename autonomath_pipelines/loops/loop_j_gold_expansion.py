"""Loop J — gold expansion: queries the service answers consistently and confidently become gold rows.

query_log (30 days ending at the partition end, confidence ≥ 0.85) → gold_expansion_snapshot →
gold_expansion_candidates (texts asked in ≥ 5 sessions whose high-confidence answers all name the
same top-1 program, minus texts already in ``evals/gold.yaml``; blocking gates) →
gold_candidates_published (``evals/_candidates/gold_proposed_<YYYY-MM>.yaml`` under the service
repo root, in the gold schema, every item ``pending_review`` with its evidence).

The rule and the schema live in ``lib/gold.py``. The gold set is read from
``LoopSettings.repo_path() / "evals/gold.yaml"``: a missing file is an empty gold set (logged), a
malformed one fails the run with an error naming the file.
"""

import dagster as dg
import pandas as pd
from pydantic import Field

from autonomath_pipelines import CODE_VERSION
from autonomath_pipelines.catalog import loop_spec
from autonomath_pipelines.lib import badrows
from autonomath_pipelines.lib import gold as goldlib
from autonomath_pipelines.lib.textnorm import MAX_QUERY_CHARS
from autonomath_pipelines.loops.common import (
    FilePublishPlan,
    LoopDefinition,
    Window,
    asset_defaults,
    frame_metadata,
    gate_results,
    gate_specs,
    provenance,
    published_asset,
    snapshot_result,
    window_for,
)
from autonomath_pipelines.resources import AutonomathDatabase, LoopSettings

SPEC = loop_spec("loop_j_gold_expansion")
COMMON = asset_defaults(SPEC)
#: The gold set review appends approved items to, and the folder of the loop's proposal files.
GOLD_PATH = SPEC.promotes_to
CANDIDATES_FOLDER = SPEC.candidates_folder
MAX_CANDIDATES = 5000
#: The columns loop J reads must be well-formed; other rows are skipped and counted (lib/badrows.py).
QUERY_RULES = badrows.TableRules(
    "query_log",
    "id",
    (
        badrows.timestamp("ts"),
        badrows.text("session_id"),
        badrows.text("query_text", max_chars=MAX_QUERY_CHARS),
        badrows.text("top1_program_id", nullable=True),
        badrows.number("confidence", lo=0.0, hi=1.0),
    ),
)


class SnapshotConfig(dg.Config):
    min_confidence: float = Field(
        default=goldlib.MIN_CONFIDENCE,
        ge=0.0,
        le=1.0,
        description="High-confidence "
        "threshold of the rule: only rows at least this confident are evidence (lower "
        "rows are ignored by the rule, so they are not read).",
    )


class CandidatesConfig(dg.Config):
    min_sessions: int = Field(default=goldlib.MIN_SESSIONS, description="Distinct sessions a text needs.")
    max_candidates: int = Field(
        default=1000,
        description=f"At most this many proposals per file (≤ {MAX_CANDIDATES}); "
        "the best-evidenced (most sessions) first.",
    )
    gold_path: str = Field(default=GOLD_PATH, description="The gold set, relative to the service repo root.")


#: Ids of query_log read at once: a slice of a busy month, a few hundred MB at most in memory.
ID_SLICE = 500_000


def snapshot_min_confidence(snapshot: pd.DataFrame) -> float:
    """The confidence threshold the snapshot was read at (the rule's default for an empty one)."""
    return float(snapshot["min_confidence"].iloc[0]) if len(snapshot) else goldlib.MIN_CONFIDENCE


def candidates_file_name(partition_key: str) -> str:
    """``gold_proposed_2026-10.yaml`` for partition ``2026-10-01`` (a range: its last month)."""
    last = partition_key.split("..")[-1]
    return f"gold_proposed_{last[:7]}.yaml"


def render_candidates(candidates: pd.DataFrame) -> str:
    """The candidate file's text, from the candidates frame alone (the gate and the publish step
    render the same text). Deterministic except for the run id."""
    first = candidates.iloc[0] if len(candidates) else None
    keys = ("loop_id", "run_id", "partition_key", "code_version", "window_start_utc", "window_end_utc", "gold_path")
    prov = {k: (str(first[k]) if first is not None else candidates.attrs.get(k)) for k in keys}
    for key, kind in (("min_confidence", float), ("min_sessions", int)):
        value = first[key] if first is not None else candidates.attrs.get(key)
        prov[key] = kind(value) if value is not None else None
    header = (
        f"Gold-set proposals of loop J ({SPEC.title}), partition {prov['partition_key']}.\n"
        "Every item is pending_review: move the ones you accept into evals/gold.yaml (drop status/evidence).\n"
        f"Rule: confidence >= {prov['min_confidence']} rows in >= {prov['min_sessions']} distinct sessions, "
        "all of them with the same top-1 program.\n"
        "Schema: see autonomath_pipelines/lib/gold.py and the header of evals/gold.yaml."
    )
    gold = goldlib.proposals_file(candidates, prov, description="Gold-set proposals awaiting operator review.")
    return goldlib.render_gold(gold, header=header)


@dg.asset(name="gold_expansion_snapshot", deps=["query_log"], kinds={"sqlite", "parquet"}, **COMMON)
def gold_expansion_snapshot(
    context: dg.AssetExecutionContext, config: SnapshotConfig, autonomath_db: AutonomathDatabase
) -> dg.MaterializeResult[pd.DataFrame]:
    """The rule's evidence over the 30 days ending at the partition end: per normalized text whose
    every high-confidence answer names one program, that program, its sessions, requests and
    confidences (``lib/gold.py``). The window is read in slices of ids and counted as it goes, so a
    month of a busy service never sits in memory row by row; malformed rows (a confidence that is
    not a number in [0, 1], a timestamp not contract text, …) are skipped and counted."""
    autonomath_db.preflight(SPEC.reads, context=SPEC.loop_id)
    window = window_for(context, SPEC)
    params = (window.start_iso, window.end_iso, config.min_confidence)
    # ``+ts``: each slice is found by its id range, never by a scan of the whole window's ts index.
    sql = (
        "SELECT id, session_id, query_text, top1_program_id, confidence FROM query_log "
        f"WHERE id >= ? AND id < ? AND +ts >= ? AND +ts < ? AND confidence >= ? AND {QUERY_RULES.good('query_log')}"
    )
    counter, bad, rows_read = goldlib.EvidenceCounter(), badrows.BadRows(), 0
    with autonomath_db.read_only() as conn:
        first, last = conn.execute(
            "SELECT MIN(id), MAX(id) FROM query_log WHERE ts >= ? AND ts < ?", params[:2]
        ).fetchone()
        for start in range(first, last + 1, ID_SLICE) if first is not None else ():
            rows, bad = badrows.frame_checked(
                conn, sql, (start, start + ID_SLICE, *params), table="query_log", key="id", bad=bad
            )
            counter.add(rows)
            rows_read += len(rows)
        bad.extend(badrows.count_bad(conn, QUERY_RULES, "ts >= ? AND ts < ?", params[:2]))
    evidence = counter.evidence().assign(min_confidence=float(config.min_confidence))
    return snapshot_result(
        context,
        evidence,
        goldlib.EVIDENCE_COLUMNS,
        bad,
        **window.metadata(),
        param_min_confidence=float(config.min_confidence),
        distinct_texts=counter.distinct_texts,
        high_confidence_requests=rows_read,
    )


@dg.asset(
    name="gold_expansion_candidates",
    kinds={"pandas", "parquet"},
    check_specs=gate_specs("gold_expansion_candidates", goldlib.candidate_gates("", frozenset(), None)),
    **COMMON,
)
def gold_expansion_candidates(
    context: dg.AssetExecutionContext,
    config: CandidatesConfig,
    autonomath_db: AutonomathDatabase,
    loop_settings: LoopSettings,
    gold_expansion_snapshot: pd.DataFrame,
):
    """Proposed gold rows (gold schema + evidence), minus the texts already in the gold set. Blocking
    gates: the rendered YAML parses, nothing duplicates the gold set, every program exists."""
    if not 1 <= config.max_candidates <= MAX_CANDIDATES:
        raise ValueError(f"max_candidates must be in 1..{MAX_CANDIDATES}, got {config.max_candidates}")
    window = window_for(context, SPEC)
    gold_path = loop_settings.repo_path() / config.gold_path
    gold = goldlib.load_gold(gold_path)
    if gold is None:
        context.log.warning(f"no gold set at {gold_path}: treating it as empty")
        gold = goldlib.GoldFile()
    gold_queries = gold.normalized_queries()
    eligible = goldlib.choose_gold(gold_expansion_snapshot, min_sessions=config.min_sessions)
    min_confidence = snapshot_min_confidence(gold_expansion_snapshot)
    in_gold = eligible["query"].isin(list(gold_queries))
    proposals = eligible[~in_gold].head(config.max_candidates).reset_index(drop=True)
    candidates = proposals.assign(
        status="pending_review",
        **provenance(context, SPEC, window),
        window_start_utc=window.start_iso,
        window_end_utc=window.end_iso,
        gold_path=config.gold_path,
        min_confidence=min_confidence,
        min_sessions=int(config.min_sessions),
    )
    candidates.attrs.update(
        min_confidence=min_confidence,
        min_sessions=int(config.min_sessions),
        loop_id=SPEC.loop_id,
        run_id=context.run.run_id,
        partition_key=window.partition_key,
        code_version=CODE_VERSION,
        window_start_utc=window.start_iso,
        window_end_utc=window.end_iso,
        gold_path=config.gold_path,
    )
    with autonomath_db.read_only() as conn:  # programs re-read at run time, not from the snapshot
        programs = frozenset(
            p for (p,) in badrows.checked_rows(conn, "SELECT program_id FROM programs", table="programs")
        )
    rendered = render_candidates(candidates)
    run_gates = goldlib.candidate_gates(rendered, gold_queries, programs)
    return dg.MaterializeResult(
        value=candidates,
        metadata=frame_metadata(
            candidates,
            ["query", "expected_program_id", "sessions", "requests", "mean_confidence"],
            candidates_proposed=len(candidates),
            eligible_texts=len(eligible),
            skipped_in_gold=int(in_gold.sum()),
            dropped_by_cap=max(0, len(eligible) - int(in_gold.sum()) - len(candidates)),
            gold_items=len(gold.items),
            gold_path=str(gold_path),
            param_min_sessions=int(config.min_sessions),
            param_min_confidence=min_confidence,
        ),
        check_results=gate_results("gold_expansion_candidates", run_gates, candidates),
    )


def gold_proposals_plan(
    context: dg.AssetExecutionContext, settings: LoopSettings, window: Window, candidates: pd.DataFrame
) -> FilePublishPlan:
    if candidates.empty:  # parquet keeps no attrs: an empty file still names its run
        candidates.attrs.update(
            loop_id=SPEC.loop_id,
            run_id=context.run.run_id,
            partition_key=window.partition_key,
            code_version=CODE_VERSION,
            window_start_utc=window.start_iso,
            window_end_utc=window.end_iso,
            gold_path=GOLD_PATH,
            min_confidence=goldlib.MIN_CONFIDENCE,
            min_sessions=goldlib.MIN_SESSIONS,
        )
    name = candidates_file_name(window.partition_key)
    return FilePublishPlan(
        folder=CANDIDATES_FOLDER,
        files={name: render_candidates(candidates)},
        metadata={"proposals": len(candidates), "file": name},
    )


gold_candidates_published = published_asset(
    SPEC,
    "gold_candidates_published",
    plan=gold_proposals_plan,
    kinds={"yaml"},
    description="``evals/_candidates/gold_proposed_<YYYY-MM>.yaml`` under the repo root (dry run: nothing "
    "written). Re-running a month replaces its file.",
)

LOOP = LoopDefinition.of(SPEC, gold_expansion_snapshot, gold_expansion_candidates, gold_candidates_published)
