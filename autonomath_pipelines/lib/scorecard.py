"""Loop scorecard: what each loop proposed, how the operator decided, what its runs cost.

Inputs are plain frames the operations shell reads: the review audit log (``review_audit_log``
rows), the loops' runs in the window (one row per Dagster run, with a cost in seconds and where the
cost came from) and the candidates each loop proposed. Timestamps are ISO-8601 UTC text or
tz-aware datetimes; a window is ``[since, until)``.

Counting rules:

- approved / rejected: distinct candidates with such a decision in the window; the acceptance rate
  is approved / (approved + rejected), undefined (NaN) when nothing was decided.
- review delay: decision time − the candidate's ``proposed_at``, in hours, first decision of each
  kind per candidate; rows without ``proposed_at`` do not count.
- promoted / rolled_back: distinct candidates promoted / rolled back in the window. A rollback row
  without a candidate id stands for every candidate of its promotion.
- a promotion *stands* (the digest's "promoted") when no rollback of the candidate follows it.
- runs: finished runs (success, failure, canceled); failures: runs with status FAILURE; cost: the
  median over runs with a known cost, and its share of the catalog's ceiling.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from autonomath_pipelines.catalog import LoopSpec, loop_spec

AUDIT_COLUMNS = (
    "audit_id",
    "ts",
    "actor",
    "action",
    "loop_id",
    "candidate_id",
    "from_status",
    "to_status",
    "reason",
    "proposed_at",
    "promotion_id",
    "dagster_run_id",
    "detail_json",
)
FINISHED_STATUSES = ("SUCCESS", "FAILURE", "CANCELED")
#: Columns of the scorecard frame, in order (one row per catalog loop).
SCORECARD_COLUMNS = (
    "letter",
    "loop_id",
    "proposed",
    "approved",
    "rejected",
    "promoted",
    "rolled_back",
    "acceptance_rate",
    "median_review_delay_h",
    "runs",
    "failures",
    "median_cost_s",
    "cost_ceiling_s",
    "cost_share_of_ceiling",
    "cost_source",
)
COUNT_COLUMNS = ("proposed", "approved", "rejected", "promoted", "rolled_back", "runs", "failures")
RATE_COLUMNS = ("acceptance_rate", "median_review_delay_h", "median_cost_s", "cost_share_of_ceiling")


def utc_timestamp(value: Any) -> pd.Timestamp:
    """A tz-aware UTC ``pd.Timestamp`` from a datetime or ISO text (naive values are taken as UTC)."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def canonical_loop_id(value: Any) -> Any:
    """The catalog loop id of ``value`` (a loop id or letter); anything unknown is kept as is."""
    try:
        return loop_spec(str(value)).loop_id
    except KeyError:
        return value


# ------------------------------------------------------------------------------------ audit log


def prepare_audit(audit: pd.DataFrame) -> pd.DataFrame:
    """The audit log with parsed times, catalog loop ids, chronological ``order`` and rollback rows
    expanded to one row per candidate of their promotion."""
    frame = audit.reindex(columns=list(AUDIT_COLUMNS)).copy()
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, errors="coerce")
    frame["proposed_at"] = pd.to_datetime(frame["proposed_at"], utc=True, errors="coerce")
    frame["promotion_id"] = pd.to_numeric(frame["promotion_id"], errors="coerce").astype("Int64")
    frame["loop_id"] = frame["loop_id"].map(canonical_loop_id)
    frame = frame.dropna(subset=["ts"])
    promoted = frame.loc[frame["action"].eq("promote"), ["promotion_id", "candidate_id"]].dropna().drop_duplicates()
    bare = frame["action"].eq("rollback") & frame["candidate_id"].isna() & frame["promotion_id"].notna()
    expanded = frame[bare].drop(columns="candidate_id").merge(promoted, on="promotion_id", how="inner")
    frame = pd.concat([frame[~bare], expanded], ignore_index=True)
    frame = frame.sort_values(["ts", "audit_id"], kind="stable", na_position="last").reset_index(drop=True)
    frame["order"] = np.arange(len(frame))
    return frame


def _in_window(times: pd.Series, since: Any, until: Any) -> pd.Series:
    return (times >= utc_timestamp(since)) & (times < utc_timestamp(until))


def standing_promotions(audit: pd.DataFrame, since: Any, until: Any) -> pd.DataFrame:
    """Candidates promoted in ``[since, until)`` and not rolled back after their promotion
    (``loop_id``, ``candidate_id``, ``ts``, ``promotion_id``)."""
    frame = prepare_audit(audit)
    keys = ["loop_id", "candidate_id"]
    promotes = frame[
        frame["action"].eq("promote") & frame["candidate_id"].notna() & _in_window(frame["ts"], since, until)
    ]
    latest = promotes.sort_values("order").drop_duplicates(keys, keep="last")
    rollbacks = (
        frame[frame["action"].eq("rollback") & frame["candidate_id"].notna()]
        .groupby(keys, as_index=False)["order"]
        .max()
        .rename(columns={"order": "rolled_back_order"})
    )
    merged = latest.merge(rollbacks, on=keys, how="left")
    standing = merged[merged["rolled_back_order"].isna() | (merged["rolled_back_order"] < merged["order"])]
    return standing[["loop_id", "candidate_id", "ts", "promotion_id"]].reset_index(drop=True)


def review_summary(audit: pd.DataFrame, since: Any, until: Any) -> pd.DataFrame:
    """Per loop over ``[since, until)``: approved, rejected, promoted, rolled_back, acceptance_rate,
    median_review_delay_h (only loops with audit rows in the window)."""
    columns = ["loop_id", "approved", "rejected", "promoted", "rolled_back", "acceptance_rate", "median_review_delay_h"]
    frame = prepare_audit(audit)
    frame = frame[_in_window(frame["ts"], since, until)].copy()
    if frame.empty:
        return pd.DataFrame(columns=columns)
    # A candidate id identifies what was decided; a row without one still counts once.
    frame["candidate_id"] = frame["candidate_id"].fillna("audit:" + frame["audit_id"].astype(str))
    firsts = frame.sort_values("order").drop_duplicates(["loop_id", "candidate_id", "action"])
    counts = (
        firsts.groupby(["loop_id", "action"])
        .size()
        .unstack(fill_value=0)
        .reindex(columns=["approve", "reject", "promote", "rollback"], fill_value=0)
        .rename(columns={"approve": "approved", "reject": "rejected", "promote": "promoted", "rollback": "rolled_back"})
    )
    decided = counts["approved"] + counts["rejected"]
    counts["acceptance_rate"] = (counts["approved"] / decided.where(decided > 0)).astype(float)
    decisions = firsts[firsts["action"].isin(["approve", "reject"]) & firsts["proposed_at"].notna()]
    delay_h = (decisions["ts"] - decisions["proposed_at"]).dt.total_seconds() / 3600.0
    counts["median_review_delay_h"] = delay_h.groupby(decisions["loop_id"]).median().reindex(counts.index)
    return counts.rename_axis(index="loop_id", columns=None).reset_index()[columns]


def acceptance_rate(approved: int, rejected: int) -> float:
    """approved / decided; NaN when nothing was decided."""
    decided = approved + rejected
    return approved / decided if decided else float("nan")


# ------------------------------------------------------------------------------------------ runs


def run_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per loop: finished runs, failures, median cost seconds and the cost's source
    (``cpu`` tag, ``step_time``, ``mixed`` or None when no run has a cost)."""
    columns = ["loop_id", "runs", "failures", "median_cost_s", "cost_source"]
    finished = runs[runs["status"].isin(FINISHED_STATUSES)] if len(runs) else runs
    if finished.empty:
        return pd.DataFrame(columns=columns)
    grouped = finished.groupby("loop_id")
    costed = finished[finished["cost_seconds"].notna()]
    sources = costed.groupby("loop_id")["cost_source"].agg(lambda s: s.iloc[0] if s.nunique() == 1 else "mixed")
    summary = pd.DataFrame(
        {
            "runs": grouped.size(),
            "failures": grouped["status"].agg(lambda s: int((s == "FAILURE").sum())),
            "median_cost_s": costed.groupby("loop_id")["cost_seconds"].median(),
            "cost_source": sources,
        }
    )
    return summary.rename_axis("loop_id").reset_index()[columns]


# ------------------------------------------------------------------------------------ scorecard


def scorecard(
    loops: Sequence[LoopSpec],
    proposed: Mapping[str, int],
    audit: pd.DataFrame,
    runs: pd.DataFrame,
    since: Any,
    until: Any,
) -> pd.DataFrame:
    """One row per catalog loop (zeros where nothing happened), columns ``SCORECARD_COLUMNS``."""
    frame = pd.DataFrame(
        {
            "letter": [s.letter for s in loops],
            "loop_id": [s.loop_id for s in loops],
            "cost_ceiling_s": [float(s.cost_ceiling_cpu_min) * 60.0 for s in loops],
        }
    )
    frame["proposed"] = frame["loop_id"].map(lambda loop_id: int(proposed.get(loop_id, 0)))
    frame = frame.merge(review_summary(audit, since, until), on="loop_id", how="left")
    frame = frame.merge(run_summary(runs), on="loop_id", how="left")
    for column in COUNT_COLUMNS:
        frame[column] = frame[column].fillna(0).astype(int)
    for column in ("acceptance_rate", "median_review_delay_h", "median_cost_s"):
        frame[column] = frame[column].astype(float)
    frame["cost_share_of_ceiling"] = frame["median_cost_s"] / frame["cost_ceiling_s"]
    frame["cost_source"] = frame["cost_source"].astype(object).where(frame["cost_source"].notna(), None)
    return frame[list(SCORECARD_COLUMNS)]


def _number(value: Any) -> int | float | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return int(value) if isinstance(value, (int, np.integer)) else float(value)


def scorecard_metrics(frame: pd.DataFrame) -> dict[str, int | float]:
    """Flat numbers the UI plots: ``<letter>_<column>`` per loop and ``total_*``; undefined values left out."""
    metrics: dict[str, int | float] = {}
    for row in frame.to_dict("records"):
        for column in (*COUNT_COLUMNS, *RATE_COLUMNS):
            value = _number(row[column])
            if value is not None:
                metrics[f"{row['letter']}_{column}"] = value
    for column in COUNT_COLUMNS:
        metrics[f"total_{column}"] = int(frame[column].sum())
    rate = acceptance_rate(int(frame["approved"].sum()), int(frame["rejected"].sum()))
    if not np.isnan(rate):
        metrics["total_acceptance_rate"] = rate
    return metrics
