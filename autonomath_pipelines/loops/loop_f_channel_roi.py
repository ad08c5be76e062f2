"""Loop F — channel ROI: which acquisition channels bring sign-ups, paying customers and revenue.

subscribers + billing_events + query_log (28 days up to the partition end) → channel_roi_snapshot
(SQL group/window aggregates per raw utm_source) → channel_roi_candidates (one row per named channel,
blocking gates: revenue reconciles exactly with billing_events, one row per channel, no negative
count) → channel_roi_published (upsert into ``channel_roi`` keyed (channel, partition_key)).

Informational: the table has no review status; a re-run replaces the partition's rows.
"""

import dagster as dg
import pandas as pd

from autonomath_pipelines.catalog import loop_spec
from autonomath_pipelines.contract.timestamps import iso_utc, utc_now
from autonomath_pipelines.lib import badrows, channel_roi
from autonomath_pipelines.loops.common import (
    LoopDefinition,
    PublishPlan,
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

SPEC = loop_spec("loop_f_channel_roi")
COMMON = asset_defaults(SPEC)
PREVIEW = ["channel", "signups_28d", "paid_28d", "revenue_28d_jpy", "refunds_jpy", "requests_28d"]


def billing_totals(database: AutonomathDatabase, window: Window):
    """Σ charge and Σ refund of the window read straight from ``billing_events`` (no join, no channel)."""

    def read() -> tuple[int, int]:
        with database.read_only() as conn:
            charges, refunds, _ = conn.execute(
                channel_roi.BILLING_TOTALS_SQL, (window.start_iso, window.end_iso)
            ).fetchone()
        return int(charges), int(refunds)

    return read


@dg.asset(
    name="channel_roi_snapshot",
    deps=["subscribers", "billing_events", "query_log"],
    kinds={"sqlite", "parquet"},
    **COMMON,
)
def channel_roi_snapshot(
    context: dg.AssetExecutionContext, autonomath_db: AutonomathDatabase
) -> dg.MaterializeResult[pd.DataFrame]:
    """The window's aggregates per raw `utm_source`: sign-ups, paid, charges, refunds, requests (SQL)."""
    autonomath_db.preflight(SPEC.reads, context=SPEC.loop_id)
    window = window_for(context, SPEC)
    with autonomath_db.read_only() as conn:
        names, rows, _ = badrows.fetch_checked(
            conn, channel_roi.AGGREGATES_SQL, {"start": window.start_iso, "end": window.end_iso}
        )
        snapshot = pd.DataFrame(channel_roi.readable_utm(rows, names), columns=names)
        # Requests from keys no subscriber holds (internal keys, rotated-away keys) have no channel.
        window_requests = int(
            conn.execute(
                "SELECT COUNT(*) FROM query_log WHERE ts >= ? AND ts < ? AND "
                f"{channel_roi.REQUEST_RULES.good('query_log')}",
                (window.start_iso, window.end_iso),
            ).fetchone()[0]
        )
        bad = channel_roi.bad_input(conn, window.start_iso, window.end_iso)
    attributed = int(snapshot["requests_28d"].sum()) if len(snapshot) else 0
    return snapshot_result(
        context,
        snapshot,
        ["utm_source", "attributed", "signups_28d", "paid_28d", "revenue_28d_jpy", "requests_28d"],
        bad,
        raw_groups=len(snapshot),
        window_requests=window_requests,
        requests_without_channel=window_requests - attributed,
        **window.metadata(),
    )


@dg.asset(
    name="channel_roi_candidates",
    kinds={"pandas", "parquet"},
    check_specs=gate_specs("channel_roi_candidates", channel_roi.candidate_gates(lambda: (0, 0))),
    **COMMON,
)
def channel_roi_candidates(
    context: dg.AssetExecutionContext, autonomath_db: AutonomathDatabase, channel_roi_snapshot: pd.DataFrame
):
    # No return annotation: with check_specs the op has several outputs and Dagster would type the
    # value output as Nothing.
    """`channel_roi` rows of the partition: one per named channel (NULL utm → "(unknown)", '' → "(empty)",
    billing of unknown subscribers → "(unattributed)").

    Blocking gates: revenue reconciles exactly with billing_events over the window (read anew), one
    row per channel, no negative count.
    """
    window = window_for(context, SPEC)
    table = channel_roi.channel_table(channel_roi_snapshot)
    candidates = table.assign(
        computed_at=iso_utc(utc_now()),
        window_start=window.start_iso,
        window_end=window.end_iso,
        **provenance(context, SPEC, window),
    )
    totals = channel_roi.summary(table)
    run_gates = channel_roi.candidate_gates(billing_totals(autonomath_db, window))
    return dg.MaterializeResult(
        value=candidates,
        metadata=frame_metadata(
            candidates,
            PREVIEW,
            total_revenue_jpy=totals["revenue_jpy"],
            total_signups=totals["signups"],
            total_paid=totals["paid"],
            channels=totals["channels"],
            total_charges_jpy=totals["charges_jpy"],
            total_refunds_jpy=totals["refunds_jpy"],
            total_requests=totals["requests"],
            **window.metadata(),
        ),
        check_results=gate_results("channel_roi_candidates", run_gates, candidates),
    )


def channel_roi_plan(
    context: dg.AssetExecutionContext, settings: LoopSettings, window: Window, candidates: pd.DataFrame
) -> PublishPlan:
    return PublishPlan(
        table="channel_roi",
        rows=candidates,
        key_columns=["channel", "partition_key"],
        stale_where="partition_key = ?",
        stale_params=(window.partition_key,),
        preserve_columns=(),
    )


channel_roi_published = published_asset(
    SPEC,
    plan=channel_roi_plan,
    description="`channel_roi` rows of this partition (dry run: nothing written). A re-run replaces them all, so "
    "a channel that vanished from the window leaves no stale row.",
)

LOOP = LoopDefinition.of(SPEC, channel_roi_snapshot, channel_roi_candidates, channel_roi_published)
