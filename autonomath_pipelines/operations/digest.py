"""The weekly self-improvement digest (DESIGN §6): the seed's line and its warnings, from the Dagster
instance's run history, the candidates' materializations and the review audit log.

``build_digest`` is what ``autonomath-loops digest`` prints (the 7 days before now); the
``self_improvement_digest`` asset writes the same digest for a calendar week (Asia/Tokyo) to
``<reports>/digests/<week start>.md``. The weekly job also materializes the loop scorecard.
"""

import datetime as dt
from pathlib import Path
from typing import Sequence
from zoneinfo import ZoneInfo

import dagster as dg

from autonomath_pipelines.catalog import TIMEZONE
from autonomath_pipelines.lib.digest import Digest, compose_digest, failure_streaks
from autonomath_pipelines.lib.files import atomic_write_text
from autonomath_pipelines.lib.scorecard import standing_promotions
from autonomath_pipelines.loops import LOOP_DEFINITIONS, LoopDefinition
from autonomath_pipelines.loops.common import OWNERS
from autonomath_pipelines.operations.failures import last_errors
from autonomath_pipelines.operations.history import (
    STREAK_LOOKBACK,
    WEEKS,
    as_utc,
    candidate_materializations,
    loop_runs,
    proposed_by_loop,
    read_review_audit,
    recent_finished_runs,
)
from autonomath_pipelines.operations.scorecard import loop_scorecard
from autonomath_pipelines.resources import AutonomathDatabase, DatabaseFileError, LoopSettings


def promoted_count(
    database: AutonomathDatabase | None, since: dt.datetime, until: dt.datetime
) -> tuple[int, list[str]]:
    """Candidates promoted in ``[since, until)`` and not rolled back since, and notes on why it may be 0."""
    if database is None:
        return 0, ["Promotions not counted: no AutonoMath database given."]
    try:
        audit = read_review_audit(database, since)
    except DatabaseFileError as exc:
        return 0, [f"Promotions not counted: {exc}"]
    return len(standing_promotions(audit, since, until)), []


def digest_for_window(
    instance: dg.DagsterInstance,
    database: AutonomathDatabase | None,
    since: dt.datetime,
    until: dt.datetime,
    *,
    reports_dir: Path,
    loops: Sequence[LoopDefinition] = LOOP_DEFINITIONS,
) -> Digest:
    """The digest of ``[since, until)``; failure streaks look at all runs created before ``until``."""
    runs = loop_runs(instance, since, until, loops, with_cost=False)
    proposed = proposed_by_loop(candidate_materializations(instance, since, until, loops))
    promoted, notes = promoted_count(database, since, until)
    streaks = failure_streaks(recent_finished_runs(instance, until, loops), lookback=STREAK_LOOKBACK)
    errors = last_errors(instance, [streak.run_ids[0] for streak in streaks], reports_dir)
    jst = ZoneInfo(TIMEZONE)
    days = round((as_utc(until) - as_utc(since)).total_seconds() / 86400)
    return compose_digest(
        [loop.spec for loop in loops],
        runs,
        proposed,
        promoted,
        streaks,
        errors,
        since.astimezone(jst),
        until.astimezone(jst),
        days,
        notes,
    )


def build_digest(
    instance: dg.DagsterInstance,
    database: AutonomathDatabase | None,
    now: dt.datetime,
    days: int = 7,
    *,
    reports_dir: str | Path | None = None,
    loops: Sequence[LoopDefinition] = LOOP_DEFINITIONS,
) -> Digest:
    """The digest of the ``days`` days before ``now`` (timezone-aware); ``reports_dir`` holds the
    failure log (default: ``LoopSettings().reports_dir``)."""
    until = as_utc(now)
    reports = Path(reports_dir).expanduser().resolve() if reports_dir else LoopSettings().reports_path()
    return digest_for_window(
        instance, database, until - dt.timedelta(days=days), until, reports_dir=reports, loops=loops
    )


@dg.asset(
    name="self_improvement_digest",
    partitions_def=WEEKS,
    group_name="operations",
    owners=OWNERS,
    kinds={"dagster", "markdown"},
)
def self_improvement_digest(
    context: dg.AssetExecutionContext, autonomath_db: AutonomathDatabase, loop_settings: LoopSettings
) -> dg.MaterializeResult:
    """The week's digest: "Self-improvement: s/n loops succeeded last 7 days, x candidates proposed,
    y promoted.", the loops that did not run or did not succeed, and a warning for every loop whose
    last two runs failed. Written to `<reports>/digests/<week start>.md`."""
    window = context.partition_time_window
    reports = loop_settings.reports_path()
    digest = digest_for_window(context.instance, autonomath_db, window.start, window.end, reports_dir=reports)
    body = digest.markdown(f"Self-improvement digest — week of {context.partition_key}")
    path = reports / "digests" / f"{context.partition_key}.md"
    atomic_write_text(path, body)
    return dg.MaterializeResult(
        metadata={
            "digest_line": dg.MetadataValue.text(digest.line),
            "loops_ran": digest.loops_ran,
            "loops_succeeded": digest.loops_succeeded,
            "candidates_proposed": digest.candidates_proposed,
            "candidates_promoted": digest.candidates_promoted,
            "consecutive_failure_loops": digest.consecutive_failure_loops,
            "digest": dg.MetadataValue.md(body),
            "path": dg.MetadataValue.path(str(path)),
        }
    )


self_improvement_weekly_job = dg.define_asset_job(
    name="self_improvement_weekly_job",
    selection=dg.AssetSelection.assets(self_improvement_digest, loop_scorecard),
    description="The week's self-improvement digest and loop scorecard (Asia/Tokyo weeks, Sunday start).",
)

self_improvement_weekly_schedule = dg.build_schedule_from_partitioned_job(
    self_improvement_weekly_job,
    name="self_improvement_weekly_schedule",
    description="Mondays 08:00 JST, for the week that ended on Saturday. Ships STOPPED.",
    minute_of_hour=0,
    hour_of_day=8,
    day_of_week=1,
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
