"""Loop D — forecast accuracy: per-program bias of the round-opening forecasts, shrunk towards the pool.

forecast_predictions ⋈ am_application_round (rounds resolved before the partition's end) →
forecast_accuracy_snapshot (one row per prediction, with its error in days) →
forecast_accuracy_candidates (one calibration per program with data: empirical-Bayes corrected
bias, shrinkage weight, n and the pooled parameters; blocking gates) → forecast_calibration_published
(upsert into ``forecast_calibration``, only when execution is enabled). Writes no predictions.

The method (normal–normal, DerSimonian–Laird τ²) is documented in ``lib/shrinkage.py``.

Backfills run as one run for a partition range (``BackfillPolicy.single_run``): every asset computes
each partition of the range with that partition's own window end and returns one frame with a
``partition_key`` column, which the IO manager splits into one file per partition.
"""

import dagster as dg
import pandas as pd
from pydantic import Field

from autonomath_pipelines.catalog import loop_spec
from autonomath_pipelines.contract.timestamps import iso_utc, utc_now
from autonomath_pipelines.lib import badrows
from autonomath_pipelines.lib.calibration import COEF_KEYS, calibrate, candidate_gates
from autonomath_pipelines.loops.common import (
    LoopDefinition,
    asset_defaults,
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

SPEC = loop_spec("loop_d_forecast_accuracy")
COMMON = asset_defaults(SPEC, backfill_policy=dg.BackfillPolicy.single_run())
PARTITIONS = COMMON["partitions_def"]

SNAPSHOT_COLUMNS = [
    "partition_key",
    "prediction_id",
    "program_id",
    "round_id",
    "round_no",
    "predicted_at",
    "predicted_opens_at",
    "opens_at",
    "resolved_at",
    "model_version",
    "error_days",
]
CANDIDATE_COLUMNS = [
    "partition_key",
    "program_id",
    "coef_json",
    "computed_at",
    "evidence_json",
    "status",
    "loop_id",
    "run_id",
    "code_version",
    *COEF_KEYS,
]


def partition_ends(context: dg.AssetExecutionContext) -> dict[str, str]:
    """Each partition of the run (one, or a single-run range) → its window end (UTC text).

    The window is "all rounds resolved by the window end", which is the partition's end."""
    ends = {}
    for key in context.partition_keys:
        window = PARTITIONS.time_window_for_partition_key(key)
        ends[key] = iso_utc(SPEC.window_bounds(window.start, window.end)[1])
    return ends


# ---------------------------------------------------------------------------------------- assets

#: The columns loop D reads must be well-formed; other rows are skipped and counted (lib/badrows.py).
PREDICTION_RULES = badrows.TableRules(
    "forecast_predictions",
    "prediction_id",
    (
        badrows.timestamp("predicted_at"),
        badrows.timestamp("predicted_opens_at"),
        badrows.text("program_id"),
        badrows.text("model_version"),
        badrows.reference("round_id", "am_application_round", "round_id"),
    ),
)
ROUND_RULES = badrows.TableRules(
    "am_application_round",
    "round_id",
    (
        badrows.timestamp("opens_at"),
        badrows.number("round_no", integer=True),
        badrows.text("program_id"),
        badrows.Rule(
            "resolved_at",
            "resolved round without an ISO-8601 UTC resolved_at",
            "timestamp",
            f"{{t}}.status != 'resolved' OR ({badrows.timestamp('resolved_at').condition})",
            table_wide=True,
        ),
    ),
)
#: A forecast further off than this (days) is a corrupt value, not a forecast error: it would swamp
#: the pooled variance of every program.
MAX_ERROR_DAYS = 3650
ERROR_DAYS_SQL = "(julianday(p.predicted_opens_at) - julianday(r.opens_at))"
#: Cross-table consistency of a joined (prediction, round) pair: (column, problem, kind, SQL true when good).
PAIR_RULES = (
    ("program_id", "program differs from its round's program", "reference", "p.program_id = r.program_id"),
    (
        "predicted_opens_at",
        f"forecast error beyond {MAX_ERROR_DAYS} days",
        "value",
        f"abs({ERROR_DAYS_SQL}) <= {MAX_ERROR_DAYS}",
    ),
)
GOOD_PAIR = " AND ".join(
    [PREDICTION_RULES.good("p"), ROUND_RULES.good("r"), *(f"COALESCE(({sql}), 0)" for *_, sql in PAIR_RULES)]
)


def count_bad_forecasts(conn) -> badrows.BadRows:
    """Malformed predictions and rounds (whole tables: the window is "everything resolved so far")."""
    bad = badrows.count_bad(conn, PREDICTION_RULES)
    bad.extend(badrows.count_bad(conn, ROUND_RULES))
    joined = (
        "FROM forecast_predictions p JOIN am_application_round r ON r.round_id = p.round_id "
        f"WHERE {PREDICTION_RULES.good('p')} AND {ROUND_RULES.good('r')}"
    )
    for column, problem, kind, sql in PAIR_RULES:
        ids = [
            i
            for (i,) in conn.execute(
                f"SELECT CAST(p.prediction_id AS BLOB) {joined} AND NOT COALESCE(({sql}), 0) ORDER BY p.rowid"
            )
        ]
        bad.add("forecast_predictions", column, problem, kind, len(ids), ids[: badrows.EXAMPLES])
    return bad


@dg.asset(
    name="forecast_accuracy_snapshot",
    deps=["forecast_predictions", "am_application_round"],
    kinds={"sqlite", "parquet"},
    **COMMON,
)
def forecast_accuracy_snapshot(
    context: dg.AssetExecutionContext, autonomath_db: AutonomathDatabase
) -> dg.MaterializeResult[pd.DataFrame]:
    """Every forecast of a round resolved before the partition's end, with its error
    ``predicted_opens_at − opens_at`` in days (one row per prediction and partition). Malformed
    predictions and rounds are skipped and counted."""
    autonomath_db.preflight(SPEC.reads, context=SPEC.loop_id)
    window = window_for(context, SPEC)
    frames = []
    # Rows whose text does not decode, as the last (widest: windows only grow) partition of the run saw them.
    undecodable = badrows.BadRows()
    for key, end in partition_ends(context).items():
        frame, undecodable = badrows.read_checked(
            autonomath_db.read_only,
            "SELECT ? AS partition_key, p.prediction_id, p.program_id, p.round_id, r.round_no, p.predicted_at, "
            f"p.predicted_opens_at, r.opens_at, r.resolved_at, p.model_version, {ERROR_DAYS_SQL} AS error_days "
            "FROM forecast_predictions p JOIN am_application_round r ON r.round_id = p.round_id "
            f"WHERE r.status = 'resolved' AND r.resolved_at < ? AND p.predicted_at < ? AND {GOOD_PAIR} "
            "ORDER BY p.prediction_id",
            (key, end, end),
            table="forecast_predictions",
            key="prediction_id",
            sources={c: ("am_application_round", "round_id") for c in ("round_no", "opens_at", "resolved_at")},
        )
        frames.append(frame)
    with autonomath_db.read_only() as conn:
        bad = count_bad_forecasts(conn).extend(undecodable)
    snapshot = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SNAPSHOT_COLUMNS)
    snapshot = snapshot[SNAPSHOT_COLUMNS]
    snapshot["error_days"] = pd.to_numeric(snapshot["error_days"]).round(6)
    return snapshot_result(
        context,
        snapshot,
        ["partition_key", "program_id", "round_id", "opens_at", "predicted_opens_at", "error_days"],
        bad,
        window_end_utc=window.end_iso,
        window="all rounds resolved by the window end",
        programs=int(snapshot["program_id"].nunique()) if len(snapshot) else 0,
        rounds=int(snapshot["round_id"].nunique()) if len(snapshot) else 0,
    )


class CalibrationConfig(dg.Config):
    holdout_fraction: float = Field(
        default=0.34,
        description="Share of each program's later rounds held out "
        "to score the calibration (reported as metadata, not written).",
    )


@dg.asset(
    name="forecast_accuracy_candidates",
    kinds={"numpy", "parquet"},
    check_specs=gate_specs("forecast_accuracy_candidates", candidate_gates()),
    **COMMON,
)
def forecast_accuracy_candidates(
    context: dg.AssetExecutionContext, config: CalibrationConfig, forecast_accuracy_snapshot: pd.DataFrame
):
    # No return annotation: with check_specs the op has several outputs and Dagster would type the
    # value output as Nothing.
    """Rows that would go into `forecast_calibration`: per program with data, the empirical-Bayes
    corrected bias (days), its shrinkage weight, n and the pooled parameters (μ, τ², σ²).

    Blocking gates: every coefficient finite, weights in [0, 1], one row per program with data,
    every row pending review."""
    window = window_for(context, SPEC)
    ends = partition_ends(context)
    computed_at = iso_utc(utc_now())
    snapshot = forecast_accuracy_snapshot
    frames, stats, expected = [], {}, {}
    for key, end in ends.items():
        rows = snapshot[snapshot["partition_key"] == key]
        rows = rows[pd.to_numeric(rows["error_days"], errors="coerce").notna()]
        expected[key] = set(rows["program_id"])
        # For a range, the pooled/held-out numbers in the metadata are those of its last partition.
        frame, stats = calibrate(key, end, rows, holdout_fraction=config.holdout_fraction)
        frames.append(frame)
    base = provenance(context, SPEC, window)
    candidates = (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()).reindex(
        columns=["partition_key", "program_id", "coef_json", "evidence_json", *COEF_KEYS]
    )
    candidates = candidates.assign(
        computed_at=computed_at,
        status="pending_review",
        loop_id=base["loop_id"],
        run_id=base["run_id"],
        code_version=base["code_version"],
    )[CANDIDATE_COLUMNS]
    checks = candidate_gates(expected)
    return dg.MaterializeResult(
        value=candidates,
        metadata=frame_metadata(
            candidates,
            ["partition_key", "program_id", "n", "mean_error_days", "weight", "bias_days"],
            candidates_proposed=len(candidates),
            window_end_utc=window.end_iso,
            **{k: float(v) for k, v in stats.items()},
        ),
        check_results=gate_results("forecast_accuracy_candidates", checks, candidates),
    )


forecast_calibration_published = published_asset(
    SPEC,
    plan=review_queue(SPEC, ["program_id", "partition_key"]),
    window_gated=False,
    backfill_policy=dg.BackfillPolicy.single_run(),
    description="`forecast_calibration` rows of this month, pending operator review (dry run: nothing written)."
    "\n\nRe-running replaces the partition's still-pending rows; reviewed rows keep their status.",
)

LOOP = LoopDefinition.of(SPEC, forecast_accuracy_snapshot, forecast_accuracy_candidates, forecast_calibration_published)
