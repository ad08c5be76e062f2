"""What the loops did and what the operator did with it: run history from the Dagster instance,
candidates from the event log, the review trail from the AutonoMath database.

Every read is bounded, since production instances hold many runs: runs by tag and time in the run
storage, candidate materializations by asset key and time in the event log, step statistics only
for the window's runs that lack a measured cost, the audit log by ``ts``.
"""

from __future__ import annotations

import datetime as dt
from typing import Sequence

import dagster as dg
import pandas as pd

from autonomath_pipelines.catalog import PARTITIONS_START, TIMEZONE
from autonomath_pipelines.contract.timestamps import iso_utc
from autonomath_pipelines.lib.scorecard import AUDIT_COLUMNS, FINISHED_STATUSES, canonical_loop_id
from autonomath_pipelines.loops import LOOP_DEFINITIONS, LoopDefinition
from autonomath_pipelines.operations.runs import ASSET_JOB, CPU_SECONDS_TAG, LOOP_TAG, loop_of_run
from autonomath_pipelines.resources import AutonomathDatabase

# Dagster's own run tags (dagster._core.storage.tags; not exported by the public API).
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
#: Finished runs per loop read for failure streaks; a streak this long is reported as open-ended.
STREAK_LOOKBACK = 10
_PAGE = 1000

#: The reporting week of the digest and the scorecard: Sunday-start weeks in Asia/Tokyo, like the loops'.
WEEKS = dg.WeeklyPartitionsDefinition(start_date=PARTITIONS_START, timezone=TIMEZONE)

RUN_COLUMNS = (
    "run_id",
    "job_name",
    "loop_id",
    "partition_key",
    "status",
    "created_at",
    "start_time",
    "end_time",
    "run_time",
    "cpu_seconds",
    "step_seconds",
    "cost_seconds",
    "cost_source",
)
CANDIDATE_COLUMNS = ("loop_id", "partition_key", "run_id", "storage_id", "timestamp", "row_count")


def as_utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        raise ValueError(f"expected a timezone-aware datetime, got {moment!r}")
    return moment.astimezone(dt.timezone.utc)


def asset_loops(loops: Sequence[LoopDefinition] = LOOP_DEFINITIONS) -> dict[dg.AssetKey, str]:
    """Each loop asset's loop id: UI materializations run ``__ASSET_JOB`` without the loop tag."""
    return {key: loop.spec.loop_id for loop in loops for assets in loop.assets for key in assets.keys}


def _loop_run_records(
    instance: dg.DagsterInstance, loops: Sequence[LoopDefinition], limit: int | None = None, **filters
) -> list[tuple[str, dg.RunRecord]]:
    """(loop id, record) of the loops' runs matching ``filters``: loop-job runs by their tag, and asset
    runs launched from the UI whose selection lies within one loop."""
    ids = [loop.spec.loop_id for loop in loops]
    owners = asset_loops(loops)
    tagged = instance.get_run_records(dg.RunsFilter(tags={LOOP_TAG: ids}, **filters), limit=limit)
    untagged = instance.get_run_records(dg.RunsFilter(job_name=ASSET_JOB, **filters), limit=limit)
    found = [(loop_of_run(r.dagster_run, owners), r) for r in [*tagged, *untagged]]
    return [(loop_id, r) for loop_id, r in found if loop_id in ids]


def _epoch(seconds: float | None) -> pd.Timestamp:
    return pd.Timestamp(seconds, unit="s", tz="UTC") if seconds is not None else pd.NaT


def partition_key_of(tags: dict[str, str]) -> str | None:
    """A run's partition key from its tags; ``first..last`` for a single-run partition range."""
    if PARTITION_TAG in tags:
        return tags[PARTITION_TAG]
    if RANGE_START_TAG in tags:
        return f"{tags[RANGE_START_TAG]}..{tags.get(RANGE_END_TAG, '')}"
    return None


def step_seconds(instance: dg.DagsterInstance, run_id: str) -> float | None:
    """Sum of the run's step durations: the cost of runs nobody measured the CPU of (UI, schedules)."""
    spans = [
        s.end_time - s.start_time
        for s in instance.get_run_step_stats(run_id)
        if s.start_time is not None and s.end_time is not None
    ]
    return float(sum(spans)) if spans else None


def loop_runs(
    instance: dg.DagsterInstance,
    since: dt.datetime,
    until: dt.datetime,
    loops: Sequence[LoopDefinition] = LOOP_DEFINITIONS,
    *,
    with_cost: bool = True,
) -> pd.DataFrame:
    """The loops' runs that started in ``[since, until)`` (created, if never started), one row each.

    ``cost_seconds`` is the CPU time ``autonomath-loops run`` measured (``cost_source`` ``cpu``) or,
    for finished runs launched elsewhere, the sum of step durations (``step_time``).
    """
    since, until = as_utc(since), as_utc(until)
    # A run that started in the window was created before its end and last updated after its start.
    records = _loop_run_records(
        instance, loops, updated_after=since - dt.timedelta(microseconds=1), created_before=until
    )
    rows = []
    for loop_id, record in records:
        run = record.dagster_run
        created = pd.Timestamp(record.create_timestamp).tz_convert("UTC")
        start = _epoch(record.start_time)
        run_time = start if record.start_time is not None else created
        if not since <= run_time < until:
            continue
        status = run.status.value
        cpu = float(run.tags[CPU_SECONDS_TAG]) if CPU_SECONDS_TAG in run.tags else None
        steps = (
            step_seconds(instance, run.run_id) if with_cost and cpu is None and status in FINISHED_STATUSES else None
        )
        cost, source = (cpu, "cpu") if cpu is not None else (steps, "step_time") if steps is not None else (None, None)
        rows.append(
            {
                "run_id": run.run_id,
                "job_name": run.job_name,
                "loop_id": loop_id,
                "partition_key": partition_key_of(run.tags),
                "status": status,
                "created_at": created,
                "start_time": start,
                "end_time": _epoch(record.end_time),
                "run_time": run_time,
                "cpu_seconds": cpu,
                "step_seconds": steps,
                "cost_seconds": cost,
                "cost_source": source,
            }
        )
    frame = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
    return frame.sort_values("run_time", kind="stable").reset_index(drop=True)


def recent_finished_runs(
    instance: dg.DagsterInstance,
    before: dt.datetime,
    loops: Sequence[LoopDefinition] = LOOP_DEFINITIONS,
    lookback: int = STREAK_LOOKBACK,
) -> pd.DataFrame:
    """Each loop's last ``lookback`` successful or failed runs created before ``before`` (any age)."""
    rows = []
    for loop in loops:
        records = _loop_run_records(
            instance,
            [loop],
            limit=lookback,
            statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE],
            created_before=as_utc(before),
        )
        rows += [
            {
                "loop_id": loop_id,
                "run_id": r.dagster_run.run_id,
                "status": r.dagster_run.status.value,
                "created_at": pd.Timestamp(r.create_timestamp).tz_convert("UTC"),
                "storage_id": r.storage_id,
            }
            for loop_id, r in records
        ]
    frame = pd.DataFrame(rows, columns=["loop_id", "run_id", "status", "created_at", "storage_id"])
    # Storage ids order runs exactly where creation times can tie.
    return frame.sort_values("storage_id", ascending=False).reset_index(drop=True)


def candidate_materializations(
    instance: dg.DagsterInstance,
    since: dt.datetime,
    until: dt.datetime,
    loops: Sequence[LoopDefinition] = LOOP_DEFINITIONS,
) -> pd.DataFrame:
    """The latest materialization in ``[since, until)`` of each loop's candidates asset per partition,
    with its ``dagster/row_count``: re-running a partition replaces its count instead of adding to it."""
    since_ts, until_ts = as_utc(since).timestamp(), as_utc(until).timestamp()
    rows = []
    for loop in loops:
        cursor = None
        while True:
            result = instance.fetch_materializations(
                dg.AssetRecordsFilter(
                    asset_key=loop.candidates, after_timestamp=since_ts - 1e-6, before_timestamp=until_ts
                ),
                limit=_PAGE,
                cursor=cursor,
                ascending=True,
            )
            for record in result.records:
                metadata = record.asset_materialization.metadata
                count = metadata.get("dagster/row_count")
                rows.append(
                    {
                        "loop_id": loop.spec.loop_id,
                        "partition_key": record.partition_key or "",
                        "run_id": record.run_id,
                        "storage_id": record.storage_id,
                        "timestamp": record.timestamp,
                        "row_count": int(count.value) if count is not None else 0,
                    }
                )
            if not result.has_more:
                break
            cursor = result.cursor
    frame = pd.DataFrame(rows, columns=list(CANDIDATE_COLUMNS))
    frame = frame[(frame["timestamp"] >= since_ts) & (frame["timestamp"] < until_ts)]
    return (
        frame.sort_values("storage_id")
        .drop_duplicates(["loop_id", "partition_key"], keep="last")
        .reset_index(drop=True)
    )


def proposed_by_loop(materializations: pd.DataFrame) -> dict[str, int]:
    """Candidates proposed per loop. A run over a partition range reports its whole count on every
    partition's materialization, so each run counts once."""
    per_run = materializations.drop_duplicates(["loop_id", "run_id"])
    return {loop_id: int(count) for loop_id, count in per_run.groupby("loop_id")["row_count"].sum().items()}


# ------------------------------------------------------------------------------ review trail


def table_exists(database: AutonomathDatabase, table: str) -> bool:
    found = database.read_frame("SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
    return not found.empty


def read_review_audit(database: AutonomathDatabase, since: dt.datetime) -> pd.DataFrame:
    """Audit rows from ``since`` on, plus the promote rows of promotions rolled back since (to know
    which candidates a bare rollback row stands for). No review yet (no table): no rows."""
    if not table_exists(database, "review_audit_log"):
        return pd.DataFrame(columns=list(AUDIT_COLUMNS))
    return database.read_frame(
        "SELECT * FROM review_audit_log WHERE ts >= :since OR (action = 'promote' AND promotion_id IN "
        "(SELECT promotion_id FROM review_audit_log WHERE action = 'rollback' AND ts >= :since))",
        {"since": iso_utc(since)},
    )


def read_applied_promotions(
    database: AutonomathDatabase, loop_id: str, after: dt.datetime, before: dt.datetime
) -> pd.DataFrame:
    """Promotions of ``loop_id`` made in ``(after, before)`` that are still applied."""
    columns = ["promotion_id", "promoted_at", "loop_id", "after_json"]
    if not table_exists(database, "review_promotions"):
        return pd.DataFrame(columns=columns)
    frame = database.read_frame(
        f"SELECT {', '.join(columns)} FROM review_promotions "
        "WHERE state = 'applied' AND promoted_at > ? AND promoted_at < ? ORDER BY promoted_at, promotion_id",
        (iso_utc(after), iso_utc(before)),
    )
    return frame[frame["loop_id"].map(canonical_loop_id) == loop_id].reset_index(drop=True)
