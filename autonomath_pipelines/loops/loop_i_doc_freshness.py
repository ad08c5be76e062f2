"""Loop I — doc freshness: which program source pages to re-fetch first.

programs + source_change_signals (latest conclusive scan per URL before the partition end) →
doc_freshness_snapshot → doc_freshness_candidates (priority = 0.6·staleness_days + 0.3·tier_weight
+ 0.1·change_signal, top N, blocking gates) → source_refetch_queue_published (upsert, only when
execution is enabled).

"State at run time" is read as *the state as of the partition end*: signals observed before it,
staleness measured to it. A run and a later backfill of the same partition therefore agree (the
``programs`` table has no history, so its current state is used; pages fetched after the partition
end count as 0 days stale). See ``lib/freshness.py`` for the terms and their units.

Honest semantics: this loop only proposes re-fetches. It never touches
``programs.source_fetched_at``; a blocking gate re-reads a digest of (program_id, source_fetched_at)
before publishing and a check after publishing proves it unchanged.
"""

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from autonomath_pipelines.catalog import loop_spec
from autonomath_pipelines.contract.timestamps import iso_utc, utc_now
from autonomath_pipelines.lib import badrows, gates
from autonomath_pipelines.lib.freshness import (
    DEFAULT_TIER_WEIGHTS,
    DEFAULT_TOP_N,
    INCONCLUSIVE_STATUSES,
    SIGNAL_CLASSES,
    TERMS,
    FreshnessWeights,
    fetched_at_digest,
    rank_top,
    score_programs,
)
from autonomath_pipelines.lib.gates import Gate, GateResult
from autonomath_pipelines.loops.common import (
    LoopDefinition,
    PublishPlan,
    asset_defaults,
    check_result,
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
from autonomath_pipelines.resources import AutonomathDatabase

SPEC = loop_spec("loop_i_doc_freshness")
COMMON = asset_defaults(SPEC)
#: Hard cap of the re-fetch queue per run (blocking gate); the configured N may not exceed it.
MAX_QUEUE_ROWS = 500

SNAPSHOT_COLUMNS = [
    "program_id",
    "source_url",
    "tier",
    "source_fetched_at",
    "signal_observed_at",
    "signal_status",
    "signal_last_modified",
]
#: The columns loop I reads must be well-formed; other rows are skipped and counted (lib/badrows.py).
#: A program whose source_fetched_at is not contract text has no measurable staleness: it is left out
#: (named in the snapshot's bad_rows) rather than guessed at.
PROGRAM_RULES = badrows.TableRules(
    "programs",
    "program_id",
    (
        badrows.text("program_id", required=True),
        badrows.text("source_url", required=True),
        badrows.timestamp("source_fetched_at"),
    ),
)
#: A signal with a malformed timestamp, status or Last-Modified is not evidence: the latest
#: well-formed conclusive signal of the URL is used instead. Last-Modified may be the raw header's
#: HTTP-date as well as contract text.
SIGNAL_RULES = badrows.TableRules(
    "source_change_signals",
    "id",
    (
        badrows.timestamp("observed_at"),
        badrows.text("source_url"),
        badrows.number("http_status", lo=100, hi=599, integer=True),
        badrows.timestamp("last_modified", nullable=True, http_date=True),
    ),
)
PROGRAMS_SQL = (
    "SELECT program_id, source_url, tier, source_fetched_at FROM programs "
    f"WHERE {PROGRAM_RULES.good('programs')} ORDER BY program_id"
)


class FreshnessConfig(dg.Config):
    top_n: int = Field(default=DEFAULT_TOP_N, description=f"Queue at most this many URLs per run (≤ {MAX_QUEUE_ROWS}).")
    staleness_coef: float = Field(default=0.6, description="Coefficient of staleness_days (1 day = 1 point).")
    tier_coef: float = Field(default=0.3, description="Coefficient of tier_weight (points).")
    change_coef: float = Field(default=0.1, description="Coefficient of change_signal (points).")
    tier_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_TIER_WEIGHTS), description="Points per editorial tier."
    )
    changed_points: float = Field(default=100.0, description="change_signal of a 200 newer than source_fetched_at.")
    gone_points: float = Field(default=100.0, description="change_signal of a 404/410 (page may be withdrawn).")

    def weights(self) -> FreshnessWeights:
        return FreshnessWeights(
            staleness=self.staleness_coef,
            tier=self.tier_coef,
            change=self.change_coef,
            tier_weights=dict(self.tier_weights),
            changed_points=self.changed_points,
            gone_points=self.gone_points,
        )


def read_programs(database: AutonomathDatabase, bad: badrows.BadRows | None = None) -> pd.DataFrame:
    """The well-formed programs rows loop I scores (text that does not decode: left out, reported in ``bad``)."""
    frame, _ = badrows.read_checked(database.read_only, PROGRAMS_SQL, table="programs", key="program_id", bad=bad)
    return frame


def programs_digest(database: AutonomathDatabase) -> str:
    """Digest of `programs`' (program_id, source_fetched_at) as the database holds them now, over the
    rows the loop reads (the well-formed ones; the snapshot's digest covers the same set)."""
    programs = read_programs(database)
    return fetched_at_digest(zip(programs["program_id"], programs["source_fetched_at"]))


# ---------------------------------------------------------------------------------------- assets


@dg.asset(
    name="doc_freshness_snapshot", deps=["programs", "source_change_signals"], kinds={"sqlite", "parquet"}, **COMMON
)
def doc_freshness_snapshot(
    context: dg.AssetExecutionContext, autonomath_db: AutonomathDatabase
) -> dg.MaterializeResult[pd.DataFrame]:
    """Every program's source page with the latest conclusive liveness signal observed before the
    partition end. Malformed programs and signals are skipped and counted."""
    autonomath_db.preflight(SPEC.reads, context=SPEC.loop_id)
    window = window_for(context, SPEC)
    inconclusive = ", ".join(str(s) for s in INCONCLUSIVE_STATUSES)
    bad = badrows.BadRows()
    programs = read_programs(autonomath_db, bad)
    signals, bad = badrows.read_checked(
        autonomath_db.read_only,
        "WITH latest AS ("
        "  SELECT id, source_url, observed_at, http_status, last_modified, "
        "         ROW_NUMBER() OVER (PARTITION BY source_url ORDER BY observed_at DESC, id DESC) AS rn "
        "  FROM source_change_signals "
        f" WHERE observed_at < :end AND http_status < 500 AND http_status NOT IN ({inconclusive}) "
        f"   AND {SIGNAL_RULES.good('source_change_signals')} "
        "    AND source_url IN (SELECT source_url FROM programs)) "
        "SELECT id AS signal_id, source_url, observed_at AS signal_observed_at, http_status AS signal_status, "
        "       last_modified AS signal_last_modified FROM latest WHERE rn = 1",
        {"end": window.end_iso},
        table="source_change_signals",
        key="signal_id",
        bad=bad,
    )
    with autonomath_db.read_only() as conn:
        bad.extend(badrows.count_bad(conn, PROGRAM_RULES))
        bad.extend(badrows.count_bad(conn, SIGNAL_RULES, "observed_at < ?", (window.end_iso,)))
    snapshot = programs.merge(signals.drop(columns=["signal_id"]), on="source_url", how="left")
    digest = fetched_at_digest(zip(snapshot["program_id"], snapshot["source_fetched_at"]))
    scanned = int(snapshot["signal_status"].notna().sum()) if len(snapshot) else 0
    return snapshot_result(
        context,
        snapshot[SNAPSHOT_COLUMNS],
        SNAPSHOT_COLUMNS,
        bad,
        **window.metadata(),
        as_of_utc=window.end_iso,
        programs=len(snapshot),
        programs_with_signal=scanned,
        source_fetched_at_sha256=digest,
        programs_sharing_a_url=int(snapshot["source_url"].duplicated(keep=False).sum()) if len(snapshot) else 0,
    )


def _no_duplicate_urls(frame: pd.DataFrame) -> GateResult:
    duplicated = int(frame["source_url"].duplicated().sum()) if len(frame) else 0
    return GateResult(duplicated == 0, f"{duplicated} duplicate source URLs", {"duplicated": duplicated})


def _priorities_finite(frame: pd.DataFrame) -> GateResult:
    values = pd.to_numeric(frame["priority"], errors="coerce").to_numpy(float) if len(frame) else np.zeros(0)
    bad = int((~np.isfinite(values)).sum())
    return GateResult(bad == 0, f"{bad} rows with a non-finite priority", {"non_finite": bad})


CANDIDATE_GATES = (
    gates.row_cap(MAX_QUEUE_ROWS),
    Gate("no_duplicate_urls", "Each source URL is queued at most once per run.", _no_duplicate_urls),
    gates.all_pending_review(),
    Gate("priorities_finite", "Every priority is a finite number.", _priorities_finite),
)
#: Evaluated against the database, not the frame: the result is built in the asset.
FETCHED_AT_UNTOUCHED = Gate(
    "source_fetched_at_untouched",
    "programs.source_fetched_at is byte-identical to the snapshot's (honest semantics: only a real fetch changes it).",
    lambda _: None,
)


def _untouched(snapshot_digest: str, live_digest: str) -> GateResult:
    same = snapshot_digest == live_digest
    return GateResult(
        same,
        "source_fetched_at unchanged since the snapshot"
        if same
        else "programs.source_fetched_at differs from the snapshot",
        {"snapshot_sha256": snapshot_digest, "live_sha256": live_digest},
    )


QUEUE_COLUMNS = ["rank", "source_url", "program_id", "tier", "priority", "reason", "dominant_term", "signal_class"]


@dg.asset(
    name="doc_freshness_candidates",
    kinds={"pandas", "parquet"},
    check_specs=gate_specs("doc_freshness_candidates", [*CANDIDATE_GATES, FETCHED_AT_UNTOUCHED]),
    **COMMON,
)
def doc_freshness_candidates(
    context: dg.AssetExecutionContext,
    config: FreshnessConfig,
    autonomath_db: AutonomathDatabase,
    doc_freshness_snapshot: pd.DataFrame,
):
    # No return annotation: with check_specs the op has several outputs and Dagster would type the
    # value output as Nothing.
    """Rows for `source_refetch_queue`: the top N source pages by priority, each with a `reason` naming
    the terms that dominated and the three terms in `evidence_json`.

    Blocking gates: at most 500 rows, no duplicate URL, all pending review, finite priorities, and
    `programs.source_fetched_at` byte-identical to the snapshot's.
    """
    if config.top_n > MAX_QUEUE_ROWS:
        raise ValueError(f"top_n {config.top_n} exceeds the per-run cap of {MAX_QUEUE_ROWS}")
    window = window_for(context, SPEC)
    weights = config.weights()
    snapshot = doc_freshness_snapshot
    scored = score_programs(snapshot, window.end, weights)
    top = rank_top(scored, config.top_n)
    queued_at = iso_utc(utc_now())
    candidates = top.assign(
        priority=top["priority"].astype(float).round(6),
        queued_at=queued_at,
        status="pending_review",
        evidence_json=[
            evidence_json(
                rank=int(r.rank),
                as_of=window.end_iso,
                source_fetched_at=r.source_fetched_at,
                staleness_days=round(float(r.staleness_days), 3),
                tier=r.tier,
                tier_weight=float(r.tier_weight),
                signal_class=r.signal_class,
                change_signal=float(r.change_signal),
                signal_status=None if pd.isna(r.signal_status) else int(r.signal_status),
                signal_observed_at=None if pd.isna(r.signal_observed_at) else r.signal_observed_at,
                signal_last_modified=None if pd.isna(r.signal_last_modified) else r.signal_last_modified,
                terms={
                    "staleness": round(weights.staleness * float(r.staleness_days), 3),
                    "tier": round(weights.tier * float(r.tier_weight), 3),
                    "change": round(weights.change * float(r.change_signal), 3),
                },
                coefficients={"staleness": weights.staleness, "tier": weights.tier, "change": weights.change},
                dominant_term=r.dominant_term,
            )
            for r in top.itertuples()
        ],
        **provenance(context, SPEC, window),
    )
    snapshot_digest = fetched_at_digest(zip(snapshot["program_id"], snapshot["source_fetched_at"]))
    untouched = _untouched(snapshot_digest, programs_digest(autonomath_db))
    n = len(candidates)
    dominant = candidates["dominant_term"].value_counts() if n else pd.Series(dtype=int)
    signals = candidates["signal_class"].value_counts() if n else pd.Series(dtype=int)
    return dg.MaterializeResult(
        value=candidates,
        metadata=frame_metadata(
            candidates,
            QUEUE_COLUMNS,
            candidates_proposed=n,
            programs_scored=len(scored),
            as_of_utc=window.end_iso,
            mean_priority=float(candidates["priority"].mean()) if n else 0.0,
            max_priority=float(candidates["priority"].max()) if n else 0.0,
            min_priority=float(candidates["priority"].min()) if n else 0.0,
            mean_staleness_days=float(candidates["staleness_days"].mean()) if n else 0.0,
            share_changed=float((candidates["signal_class"] == "changed").mean()) if n else 0.0,
            **{f"dominant_{t}": int(dominant.get(t, 0)) for t in TERMS},
            **{f"signal_{c}": int(signals.get(c, 0)) for c in SIGNAL_CLASSES},
            changed_programs_scored=int((scored["signal_class"] == "changed").sum()) if len(scored) else 0,
            changed_programs_queued=int(signals.get("changed", 0)),
        ),
        check_results=[
            *gate_results("doc_freshness_candidates", CANDIDATE_GATES, candidates),
            check_result("doc_freshness_candidates", FETCHED_AT_UNTOUCHED, untouched),
        ],
    )


def fetched_at_untouched(
    database: AutonomathDatabase, plan: PublishPlan, published: dict, inputs: dict
) -> list[GateResult]:
    snapshot = inputs["doc_freshness_snapshot"]
    return [
        _untouched(
            fetched_at_digest(zip(snapshot["program_id"], snapshot["source_fetched_at"])), programs_digest(database)
        )
    ]


source_refetch_queue_published = published_asset(
    SPEC,
    plan=review_queue(SPEC, ["source_url", "partition_key"]),
    window_gated=False,
    checks=(FETCHED_AT_UNTOUCHED,),
    verify=fetched_at_untouched,
    reads=("doc_freshness_snapshot",),
    description="`source_refetch_queue` rows of this week, pending operator review (dry run: nothing written).\n\n"
    "Re-running replaces the week's still-pending rows; reviewed rows keep their status. After the write, "
    "`programs.source_fetched_at` is checked again against the snapshot.",
)

LOOP = LoopDefinition.of(SPEC, doc_freshness_snapshot, doc_freshness_candidates, source_refetch_queue_published)
