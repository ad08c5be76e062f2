"""The loop scorecard: per loop and week, what it proposed, how the operator decided, what its runs
cost against the catalog's ceiling — and whether promoting helped (loop A's guard effect, loop H's
cache effect). Decisions live in ``lib/scorecard.py`` and ``lib/effects.py``; this module reads.
"""

import datetime as dt
from dataclasses import dataclass
from typing import Sequence
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd

from autonomath_pipelines.catalog import TIMEZONE, loop_spec
from autonomath_pipelines.contract.timestamps import iso_utc
from autonomath_pipelines.lib import effects
from autonomath_pipelines.lib.scorecard import scorecard, scorecard_metrics, utc_timestamp
from autonomath_pipelines.loops import LOOP_DEFINITIONS, LoopDefinition
from autonomath_pipelines.loops.common import OWNERS
from autonomath_pipelines.operations.history import (
    WEEKS,
    candidate_materializations,
    loop_runs,
    proposed_by_loop,
    read_applied_promotions,
    read_review_audit,
    table_exists,
)
from autonomath_pipelines.resources import AutonomathDatabase

LOOP_A = loop_spec("A").loop_id

#: Per distinct text, requests before and after the split; the ts index bounds the scan to the window.
QUERY_COUNTS_SQL = """
SELECT query_text, SUM(ts < :split) AS n_before, SUM(ts >= :split) AS n_after
FROM query_log WHERE ts >= :start AND ts < :end GROUP BY query_text
"""
WRONG_COUNTS_SQL = """
SELECT query_text, SUM(ts < :split) AS n_before, SUM(ts >= :split) AS n_after
FROM customer_feedback
WHERE wrong_answer = 1 AND query_text IS NOT NULL AND ts >= :start AND ts < :end GROUP BY query_text
"""
DAY_TRAFFIC_SQL = """
SELECT query_text, COUNT(*) AS requests FROM query_log WHERE ts >= ? AND ts < ? GROUP BY query_text
"""
#: Loop H partitions are calendar days; anything else in the column is not a cache day.
CACHE_DAY_SQL = """
SELECT MAX(partition_key) AS day FROM query_cache
WHERE partition_key GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]' AND partition_key BETWEEN ? AND ?
"""


class ScorecardConfig(dg.Config):
    effect_days: int = effects.DEFAULT_EFFECT_DAYS


def measure_guard_effects(
    database: AutonomathDatabase, since: dt.datetime, until: dt.datetime, days: int = effects.DEFAULT_EFFECT_DAYS
) -> list[effects.GuardEffect]:
    """Loop A promotions still applied whose after window overlaps ``[since, until)``, measured up to ``until``."""
    promotions = read_applied_promotions(database, LOOP_A, since - dt.timedelta(days=days), until)
    if promotions.empty:
        return []
    database.preflight(["query_log", "customer_feedback"], context="the guard effect")
    measured = []
    for row in promotions.itertuples(index=False):
        promoted_at = utc_timestamp(row.promoted_at).to_pydatetime()
        patterns = effects.guard_patterns(row.after_json)
        start, split, end = effects.effect_windows(promoted_at, until, days)
        params = {"start": iso_utc(start), "split": iso_utc(split), "end": iso_utc(end)}
        queries = database.read_frame(QUERY_COUNTS_SQL, params)
        wrong = database.read_frame(WRONG_COUNTS_SQL, params)
        measured.append(
            effects.guard_effect(
                row.promotion_id,
                promoted_at,
                patterns,
                queries,
                wrong,
                after_days=(end - split).total_seconds() / 86400,
            )
        )
    return measured


def measure_cache_effect(
    database: AutonomathDatabase, since: dt.datetime, until: dt.datetime
) -> effects.CacheEffect | None:
    """Next-day cache share of the latest cache day whose next day lies in ``[since, until)``."""
    if not table_exists(database, "query_cache"):
        return None
    day = database.read_frame(CACHE_DAY_SQL, effects.cache_day_range(since, until))["day"].iloc[0]
    if day is None:
        return None
    hashes = database.read_frame("SELECT query_hash FROM query_cache WHERE partition_key = ?", (day,))
    start, end = effects.jst_day_bounds(effects.next_day(day))
    requests = database.read_frame(DAY_TRAFFIC_SQL, (iso_utc(start), iso_utc(end)))
    return effects.cache_effect(day, requests, set(hashes["query_hash"]))


@dataclass
class Scorecard:
    since: dt.datetime
    until: dt.datetime
    frame: pd.DataFrame
    guard_effects: list[effects.GuardEffect]
    cache_effect: effects.CacheEffect | None
    effect_days: int

    def metrics(self) -> dict[str, int | float]:
        metrics = scorecard_metrics(self.frame)
        metrics["A_guard_promotions"] = len(self.guard_effects)
        metrics["A_guard_promotions_measured"] = sum(e.measured for e in self.guard_effects)
        pooled = effects.pooled(self.guard_effects)
        if pooled is not None:
            for side, counts in zip(("before", "after"), pooled):
                metrics[f"A_guard_queries_{side}"] = counts.queries
                metrics[f"A_guard_wrong_{side}"] = counts.wrong
                if counts.rate is not None:
                    metrics[f"A_guard_rate_{side}"] = float(counts.rate)
        if self.cache_effect is not None:
            metrics["H_cache_next_day_requests"] = self.cache_effect.requests
            metrics["H_cache_next_day_served"] = self.cache_effect.served
            metrics["H_cache_next_day_share"] = float(self.cache_effect.share)
        return metrics

    def markdown(self) -> str:
        jst = ZoneInfo(TIMEZONE)
        window = f"{self.since.astimezone(jst):%Y-%m-%d %H:%M} – {self.until.astimezone(jst):%Y-%m-%d %H:%M} JST"
        guard = effects.guard_markdown(self.guard_effects) or [
            f"_no applied loop A promotion in the {self.effect_days} days before or during the window_"
        ]
        cache = self.cache_effect
        cache_line = (
            f"cache of {cache.cache_day} served {cache.served}/{cache.requests} requests of "
            f"{cache.next_day} ({cache.share:.1%})"
            if cache is not None
            else "_n/a — no cache day with next-day traffic in the window_"
        )
        return "\n".join(
            [
                f"## Loops, {window}",
                "",
                _table(self.frame),
                "",
                f"## Guard effect (loop A, wrong-answer rate {self.effect_days} days before → after)",
                "",
                *guard,
                "",
                "## Cache effect (loop H, next-day share served from query_cache)",
                "",
                cache_line,
                "",
            ]
        )


def _table(frame: pd.DataFrame) -> str:
    """The scorecard as a readable Markdown table: rates as percentages, "–" where undefined."""

    def fmt(value, pattern: str) -> str:
        return "–" if pd.isna(value) else pattern.format(value)

    shown = pd.DataFrame(
        {
            "loop": frame["letter"],
            **{column: frame[column] for column in ("proposed", "approved", "rejected", "promoted", "rolled_back")},
            "acceptance": frame["acceptance_rate"].map(lambda v: fmt(v, "{:.0%}")),
            "review delay h": frame["median_review_delay_h"].map(lambda v: fmt(v, "{:.1f}")),
            "runs": frame["runs"],
            "failures": frame["failures"],
            "cost s (median)": frame["median_cost_s"].map(lambda v: fmt(v, "{:.2f}")),
            "of ceiling": frame["cost_share_of_ceiling"].map(lambda v: fmt(v, "{:.1%}")),
            "cost source": frame["cost_source"].map(lambda v: v or "–"),
        }
    )
    return shown.to_markdown(index=False)


def scorecard_for_window(
    instance: dg.DagsterInstance,
    database: AutonomathDatabase,
    since: dt.datetime,
    until: dt.datetime,
    loops: Sequence[LoopDefinition] = LOOP_DEFINITIONS,
    effect_days: int = effects.DEFAULT_EFFECT_DAYS,
) -> Scorecard:
    runs = loop_runs(instance, since, until, loops)
    proposed = proposed_by_loop(candidate_materializations(instance, since, until, loops))
    frame = scorecard([loop.spec for loop in loops], proposed, read_review_audit(database, since), runs, since, until)
    return Scorecard(
        since,
        until,
        frame,
        measure_guard_effects(database, since, until, effect_days),
        measure_cache_effect(database, since, until),
        effect_days,
    )


@dg.asset(
    name="loop_scorecard",
    partitions_def=WEEKS,
    group_name="operations",
    owners=OWNERS,
    kinds={"dagster", "sqlite", "parquet"},
)
def loop_scorecard(
    context: dg.AssetExecutionContext, config: ScorecardConfig, autonomath_db: AutonomathDatabase
) -> dg.MaterializeResult[pd.DataFrame]:
    """Per loop over the week: candidates proposed, approved, rejected, promoted, rolled back, acceptance
    rate, median review delay, runs, failures and median cost against the catalog's ceiling; plus the
    guard effect of loop A's promotions and the next-day cache share of loop H."""
    window = context.partition_time_window
    card = scorecard_for_window(
        context.instance, autonomath_db, window.start, window.end, effect_days=config.effect_days
    )
    return dg.MaterializeResult(
        value=card.frame,
        metadata={
            "dagster/row_count": len(card.frame),
            "scorecard": dg.MetadataValue.md(card.markdown()),
            **card.metrics(),
        },
    )
