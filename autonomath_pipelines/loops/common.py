"""The shape every loop shares: partitions, windows, metadata, provenance, publish, job, schedule.

A loop module states only what is particular to it; everything of the same shape lives here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import dagster as dg
import pandas as pd

from autonomath_pipelines import CODE_VERSION
from autonomath_pipelines.catalog import PARTITIONS_START, TIMEZONE, Cadence, LoopSpec
from autonomath_pipelines.contract.schema import contract
from autonomath_pipelines.contract.timestamps import iso_utc
from autonomath_pipelines.lib.badrows import BadRows
from autonomath_pipelines.lib.evidence import evidence_json  # noqa: F401  (the loops' one import of it)
from autonomath_pipelines.lib.gates import Gate, GateResult
from autonomath_pipelines.resources import AutonomathDatabase, LoopSettings

OWNERS = ["team:autonomath-operator"]
#: Pool that serializes every write to the AutonoMath database (limit set in dagster.yaml).
DB_WRITE_POOL = "autonomath_db_write"
PREVIEW_ROWS = 10


def asset_defaults(spec: LoopSpec, **extra: Any) -> dict[str, Any]:
    """What every asset of a loop declares: its group, owners, partitions and code version."""
    return dict(
        group_name=spec.group_name,
        owners=OWNERS,
        partitions_def=partitions_for(spec),
        code_version=CODE_VERSION,
        **extra,
    )


# ---------------------------------------------------------------------------------------- sources


def source_specs() -> list[dg.AssetSpec]:
    """The service's tables as external assets: lineage starts at them in the UI."""
    return [
        dg.AssetSpec(
            key=table.name,
            group_name="sources",
            kinds={"sqlite"},
            owners=OWNERS,
            description=f"AutonoMath source table `{table.name}` (columns: {', '.join(table.columns)}).",
            metadata={"dagster/column_schema": dg.TableSchema(columns=[dg.TableColumn(c) for c in table.columns])},
        )
        for table in contract().values()
        if table.section == "sources"
    ]


# ------------------------------------------------------------------------------- partitions/window


@functools.cache
def _calendar_partitions(cadence: Cadence, end_offset: int) -> dg.TimeWindowPartitionsDefinition:
    """Calendar partitions at ``cadence``; ``end_offset=1`` adds the period in progress."""
    if cadence == "daily":
        return dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone=TIMEZONE, end_offset=end_offset)
    if cadence == "weekly":
        return dg.WeeklyPartitionsDefinition(start_date=PARTITIONS_START, timezone=TIMEZONE, end_offset=end_offset)
    return dg.MonthlyPartitionsDefinition(start_date=PARTITIONS_START, timezone=TIMEZONE, end_offset=end_offset)


def partitions_for(spec: LoopSpec) -> dg.TimeWindowPartitionsDefinition:
    """Calendar partitions in Asia/Tokyo at the loop's cadence; with ``spec.in_progress_partition``
    they include the period in progress (``end_offset=1``)."""
    return _calendar_partitions(spec.cadence, 1 if spec.in_progress_partition else 0)


def last_complete_partition_key(spec: LoopSpec, now: dt.datetime) -> str | None:
    """The loop's last partition that ended at or before ``now`` (None before the first one ends)."""
    with dg.partition_loading_context(effective_dt=now):
        return _calendar_partitions(spec.cadence, 0).get_last_partition_key()


def in_progress_partition_key(spec: LoopSpec, now: dt.datetime) -> str:
    """The key of the partition ``now`` falls in: the period in progress."""
    if not spec.in_progress_partition:
        raise ValueError(f"{spec.loop_id} has no in-progress partition (LoopSpec.in_progress_partition is false)")
    return partitions_for(spec).get_partition_key_for_timestamp(now.timestamp())


@dataclass(frozen=True)
class Window:
    """What a run reads: [start, end) in UTC, for one partition or a single-run partition range."""

    start: dt.datetime
    end: dt.datetime
    partition_keys: tuple[str, ...]

    @property
    def start_iso(self) -> str:
        return iso_utc(self.start)

    @property
    def end_iso(self) -> str:
        return iso_utc(self.end)

    @property
    def partition_key(self) -> str:
        """The run's partition key, or ``first..last`` for a range."""
        keys = self.partition_keys
        return keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}"

    def metadata(self) -> dict[str, Any]:
        return {"window_start_utc": self.start_iso, "window_end_utc": self.end_iso}


def read_window(
    spec: LoopSpec,
    partition_start: dt.datetime,
    partition_end: dt.datetime,
    partition_keys: Sequence[str],
    now: dt.datetime,
    lookback_days: int | None = None,
) -> Window:
    """The read window of a partition (or range) as of ``now``: it ends at the partition end, or at
    ``now`` if that comes first (a partition in progress), and reaches back ``lookback_days`` from
    that end when given, else as far as the catalog says."""
    end = min(partition_end, now)
    start, end = spec.window_bounds(partition_start, end)
    if lookback_days is not None:
        if lookback_days < 1:
            raise ValueError(f"lookback_days must be >= 1, got {lookback_days}")
        start = end - dt.timedelta(days=lookback_days)
    return Window(start, end, tuple(partition_keys))


def run_created_at(context: dg.AssetExecutionContext) -> dt.datetime:
    """When the run was created: the one "now" every step of the run agrees on, however long it queued."""
    return context.instance.get_run_record_by_id(context.run.run_id).create_timestamp


def window_for(context: dg.AssetExecutionContext, spec: LoopSpec, lookback_days: int | None = None) -> Window:
    """The run's read window; ``lookback_days`` overrides the catalog's (a loop's run config).

    A run on a partition still in progress reads up to the moment the run was created, never a
    future end (loop I measures staleness to the window end)."""
    tw = context.partition_time_window
    return read_window(spec, tw.start, tw.end, context.partition_keys, run_created_at(context), lookback_days)


# ------------------------------------------------------------------------------------ metadata


def markdown_preview(
    frame: pd.DataFrame, columns: Sequence[str] | None = None, rows: int = PREVIEW_ROWS
) -> dg.MetadataValue:
    if frame.empty:
        return dg.MetadataValue.md("_no rows_")
    shown = frame[list(columns)] if columns else frame
    return dg.MetadataValue.md(shown.head(rows).to_markdown(index=False))


def frame_metadata(frame: pd.DataFrame, preview_columns: Sequence[str] | None = None, **extra: Any) -> dict[str, Any]:
    """Row count (``dagster/row_count``), a Markdown preview, and the loop's numbers to plot."""
    metadata: dict[str, Any] = {"dagster/row_count": len(frame), "preview": markdown_preview(frame, preview_columns)}
    for key, value in extra.items():
        metadata[key] = float(value) if isinstance(value, float) else value
    return metadata


def bad_rows_metadata(bad: "BadRows") -> dict[str, Any]:
    """What a step left out as malformed input (``lib/badrows.py``): ``bad_rows_skipped`` and
    ``bad_rows_<kind>`` to plot, and a table naming the rows (table, column, problem, row ids)."""
    return {**bad.metrics(), "bad_rows": dg.MetadataValue.md(bad.markdown())}


def snapshot_result(
    context: dg.AssetExecutionContext,
    snapshot: pd.DataFrame,
    preview_columns: Sequence[str] | None,
    bad: "BadRows",
    **figures: Any,
) -> dg.MaterializeResult:
    """A snapshot's materialization: the frame, its preview, the loop's figures (window bounds,
    counts) and what the read skipped as malformed input (logged as a warning too)."""
    log_bad_rows(context, bad)
    return dg.MaterializeResult(
        value=snapshot, metadata=frame_metadata(snapshot, preview_columns, **figures, **bad_rows_metadata(bad))
    )


def log_bad_rows(context: dg.AssetExecutionContext, bad: "BadRows") -> None:
    if bad.total:
        context.log.warning(bad.summary())


# ----------------------------------------------------------------------------------- provenance


def provenance(
    context: dg.AssetExecutionContext, spec: LoopSpec, window: Window, model_name: str | None = None
) -> dict[str, Any]:
    """Columns every output row carries: which loop, run, partition and code produced it."""
    values: dict[str, Any] = {
        "loop_id": spec.loop_id,
        "run_id": context.run.run_id,
        "partition_key": window.partition_key,
        "code_version": CODE_VERSION,
    }
    if model_name is not None:
        values["model_name"] = model_name
    return values


# ---------------------------------------------------------------------------------------- gates


def gate_specs(asset: str, gates: Sequence[Gate], *, blocking: bool = True) -> list[dg.AssetCheckSpec]:
    """Checks the asset evaluates on its own output as it materializes (per partition, in the same
    step), so a failing blocking gate stops the publish step of the same run."""
    return [
        dg.AssetCheckSpec(gate.name, asset=asset, blocking=blocking, description=gate.description) for gate in gates
    ]


def check_result(asset: str, gate: Gate, outcome: GateResult) -> dg.AssetCheckResult:
    """A gate's outcome as the Dagster check result of ``asset``."""
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=gate.name,
        passed=bool(outcome.passed),
        description=outcome.description,
        metadata=outcome.metadata,
    )


def gate_results(asset: str, gates: Sequence[Gate], frame: pd.DataFrame) -> list[dg.AssetCheckResult]:
    return [check_result(asset, gate, gate.evaluate(frame)) for gate in gates]


# -------------------------------------------------------------------------------------- publish

WINDOW_GATE = Gate(
    "window_not_abnormally_small",
    "Blocking: the run's read window is neither empty nor abnormally small against the loop's previous "
    "windows (row counts of its snapshot, lib/window_size.py); otherwise nothing is published.",
    lambda _: None,
)
#: Previous partitions of the snapshot the window gate compares with.
WINDOW_HISTORY = 8


def snapshot_row_counts(context: dg.AssetExecutionContext, snapshot: str) -> tuple[int | None, list[int]]:
    """Rows the snapshot read in this run (None if it did not materialize here), and the row counts
    of its latest materializations of up to ``WINDOW_HISTORY`` other partitions, newest first."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(snapshot)), limit=20 * WINDOW_HISTORY
    ).records

    def rows(record) -> int:
        value = record.asset_materialization.metadata.get("dagster/row_count")
        return int(value.value) if value is not None else 0

    mine = set(context.partition_keys)
    current = [rows(r) for r in records if r.run_id == context.run.run_id]
    previous: dict[str, int] = {}
    for record in records:
        if record.run_id != context.run.run_id and record.partition_key not in mine | set(previous):
            previous[record.partition_key] = rows(record)
        if len(previous) == WINDOW_HISTORY:
            break
    return (sum(current) if current else None), list(previous.values())


def window_gate(context: dg.AssetExecutionContext, snapshot: str | None) -> list[dg.AssetCheckResult]:
    """The window gate's result (none when the plan names no snapshot: the asset declares no gate)."""
    from autonomath_pipelines.lib.window_size import window_size_verdict

    if snapshot is None:
        return []
    rows, previous = snapshot_row_counts(context, snapshot)
    outcome = (
        GateResult(True, f"{snapshot} did not materialize in this run: nothing to judge", {})
        if rows is None
        else window_size_verdict(rows, previous, snapshot)
    )
    return [check_result(context.asset_key.to_user_string(), WINDOW_GATE, outcome)]


@dataclass
class PublishPlan:
    """What a publish step writes: rows upserted on ``key_columns`` after deleting ``stale_where``."""

    table: str
    rows: pd.DataFrame
    key_columns: Sequence[str]
    #: SQL condition (with ``?`` parameters) selecting the rows this write replaces; the partition's
    #: previous output, so re-running a partition never duplicates or leaves stale rows.
    stale_where: str
    stale_params: Sequence[Any] = field(default_factory=tuple)
    #: Columns an upsert never overwrites: the operator's review decision outlives re-runs.
    preserve_columns: Sequence[str] = ("status",)
    #: The loop's snapshot asset: its row count is the window the blocking window gate judges.
    snapshot: str | None = None
    #: A live cache the service serves: only a non-empty set of the newest partition replaces it.
    live_cache: bool = False
    #: The loop's own figures for the publish step's metadata.
    metadata: dict[str, Any] = field(default_factory=dict)


#: Run tag: the last partition of the backfill range the run belongs to (``autonomath-loops run --to``).
RANGE_LAST_TAG = "autonomath/range_last"


def _cache_refusal(conn, plan: PublishPlan, partition_key: str, range_last: str | None) -> str | None:
    """Why ``plan`` may not replace its live cache, or None."""
    if plan.rows.empty:
        return f"no rows: an empty set never replaces the live {plan.table}"
    if range_last and partition_key < range_last:
        return (
            f"partition {partition_key} is not the last of its backfill range (..{range_last}): only the "
            f"latest partition publishes into the live cache (a backfill computes and reports)"
        )
    (newest,) = conn.execute(f"SELECT MAX(partition_key) FROM {plan.table}").fetchone()
    if newest is not None and partition_key < newest:
        return (
            f"partition {partition_key} is older than partition {newest} that {plan.table} serves: "
            f"only the latest partition publishes into the live cache (a backfill computes and reports)"
        )
    return None


#: Keys per counting query (SQLite's bound-parameter limit is 32,766).
KEY_BATCH = 500


def _write_counts(conn, plan: PublishPlan) -> dict[str, int]:
    """Rows the write deletes (``stale_where``), then inserts or updates (key already kept)."""
    (deleted,) = conn.execute(
        f"SELECT COUNT(*) FROM {plan.table} WHERE {plan.stale_where}", tuple(plan.stale_params)
    ).fetchone()
    incoming = sorted(
        {tuple(r) for r in plan.rows[list(plan.key_columns)].astype(object).itertuples(index=False, name=None)},
        key=repr,
    )
    # Counted in SQL, never read back: kept rows may hold text Python cannot decode.
    keys, row = ", ".join(plan.key_columns), f"({', '.join('?' * len(plan.key_columns))})"
    updated = 0
    for start in range(0, len(incoming), KEY_BATCH):
        batch = incoming[start : start + KEY_BATCH]
        (found,) = conn.execute(
            f"SELECT COUNT(*) FROM {plan.table} WHERE NOT ({plan.stale_where}) "
            f"AND ({keys}) IN (VALUES {', '.join([row] * len(batch))})",
            (*plan.stale_params, *(v for key in batch for v in key)),
        ).fetchone()
        updated += found
    return {"rows_deleted": int(deleted), "rows_inserted": len(incoming) - updated, "rows_updated": updated}


def _not_published(base: dict[str, Any], why: str, gate: list, **extra: Any) -> dg.MaterializeResult:
    """A publish step that wrote nothing, and why (the window gate, or a live cache's refusal)."""
    metadata = {**base, "published": False, "not_published": why, "rows_would_write": 0, "rows_written": 0}
    return dg.MaterializeResult(metadata={**metadata, **extra}, check_results=gate)


def publish(
    context: dg.AssetExecutionContext,
    spec: LoopSpec,
    settings: LoopSettings,
    database: AutonomathDatabase,
    plan: PublishPlan,
    **extra_metadata: Any,
) -> dg.MaterializeResult:
    """Write ``plan`` in one transaction when the loop may execute; otherwise report what would be written.

    Nothing is written when the window gate fails (the step then fails on it), or when a live
    cache would be replaced by an empty set or by an older partition (the metadata says why). A dry
    run computes the same counts the execute writes, in a read-only transaction."""
    # Candidate frames may carry working columns (rank, counts) for previews; only the table's go in.
    columns = [c for c in contract()[plan.table].columns if c in plan.rows.columns]
    missing_keys = [c for c in plan.key_columns if c not in columns]
    if missing_keys:
        raise ValueError(f"rows for {plan.table} lack key columns {missing_keys}")
    gate = window_gate(context, plan.snapshot)
    dry_run = not settings.execution_enabled(spec.loop_id)
    base = {"dry_run": dry_run, "table": plan.table, **extra_metadata}
    if gate and not gate[0].passed:
        context.log.error(f"not published: {gate[0].description}")
        return _not_published(base, gate[0].description, gate, rows_deleted=0)
    partition_key = context.partition_key if context.has_partition_key else ""
    range_last = context.run.tags.get(RANGE_LAST_TAG)
    if dry_run:
        with database.read_only() as conn:
            refusal = _cache_refusal(conn, plan, partition_key, range_last) if plan.live_cache else None
            counts = None if refusal else _write_counts(conn, plan)
        if refusal:
            context.log.warning(f"dry run, would not publish: {refusal}")
            return _not_published(base, refusal, gate, rows_deleted=0, rows_would_delete=0)
        context.log.info(
            f"dry run: {len(plan.rows)} rows would be written to {plan.table}, {counts['rows_deleted']} deleted"
        )
        return dg.MaterializeResult(
            metadata={
                **base,
                "published": False,
                "rows_would_write": len(plan.rows),
                "rows_written": 0,
                "rows_deleted": 0,
                "rows_would_delete": counts["rows_deleted"],
                "rows_would_insert": counts["rows_inserted"],
                "rows_would_update": counts["rows_updated"],
            },
            check_results=gate,
        )
    kept = set(plan.key_columns) | set(plan.preserve_columns)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in kept)
    sql = (
        f"INSERT INTO {plan.table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT ({', '.join(plan.key_columns)}) DO " + (f"UPDATE SET {updates}" if updates else "NOTHING")
    )
    records = list(
        plan.rows[columns].astype(object).where(plan.rows[columns].notna(), None).itertuples(index=False, name=None)
    )
    with database.write_transaction(output_tables=[plan.table]) as conn:
        refusal = _cache_refusal(conn, plan, partition_key, range_last) if plan.live_cache else None
        if refusal is None:
            counts = _write_counts(conn, plan)
            deleted = conn.execute(
                f"DELETE FROM {plan.table} WHERE {plan.stale_where}", tuple(plan.stale_params)
            ).rowcount
            conn.executemany(sql, records)
        table_rows = conn.execute(f"SELECT COUNT(*) FROM {plan.table}").fetchone()[0]
    if refusal:
        context.log.warning(f"not published: {refusal}")
        return _not_published(base, refusal, gate, rows_deleted=0, table_rows=table_rows)
    context.log.info(f"wrote {len(records)} rows to {plan.table} (replaced {deleted})")
    return dg.MaterializeResult(
        metadata={
            **base,
            "published": True,
            "rows_would_write": len(records),
            "rows_written": len(records),
            "rows_deleted": deleted,
            "rows_inserted": counts["rows_inserted"],
            "rows_updated": counts["rows_updated"],
            "table_rows": table_rows,
        },
        check_results=gate,
    )


@dataclass
class FilePublishPlan:
    """Files a loop writes under the service repo (e.g. ``evals/_candidates``): name → content.

    ``stale`` names this partition's earlier files that the write replaces or removes."""

    folder: str  # relative to LoopSettings.repo_root
    files: dict[str, str]
    stale: Sequence[str] = ()
    #: The loop's snapshot asset, whose row count the blocking window gate judges (PublishPlan.snapshot).
    snapshot: str | None = None
    #: The loop's own figures for the publish step's metadata.
    metadata: dict[str, Any] = field(default_factory=dict)


def publish_files(
    context: dg.AssetExecutionContext,
    spec: LoopSpec,
    settings: LoopSettings,
    plan: FilePublishPlan,
    **extra_metadata: Any,
) -> dg.MaterializeResult:
    """Write ``plan.files`` and remove its stale files as one change when the loop may execute; a dry
    run writes nothing.

    Every new file is staged before the first one is replaced, so a failed write (disk full,
    read-only folder) changes nothing and a failure midway puts back what it had replaced
    (``lib.files.replace_files``); a run killed midway leaves each file old or new, never partial.
    """
    from autonomath_pipelines.lib.files import replace_files, safe_path

    folder = settings.repo_path() / plan.folder
    targets = {name: safe_path(folder, name) for name in plan.files}  # refuses unsafe names even in a dry run
    gate = window_gate(context, plan.snapshot)
    dry_run = not settings.execution_enabled(spec.loop_id)
    if gate and not gate[0].passed:
        context.log.error(f"not published: {gate[0].description}")
        return _not_published({"dry_run": dry_run}, gate[0].description, gate, folder=str(folder), **extra_metadata)
    if dry_run:
        context.log.info(f"dry run: {len(targets)} files would be written to {folder}")
        return dg.MaterializeResult(
            metadata={
                "dry_run": True,
                "rows_would_write": len(targets),
                "rows_written": 0,
                "folder": str(folder),
                **extra_metadata,
            },
            check_results=gate,
        )
    stale = [safe_path(folder, name) for name in plan.stale if name not in targets]
    removals = {path: None for path in stale if path.exists()}
    replace_files({**{path: plan.files[name] for name, path in targets.items()}, **removals})
    removed = len(removals)
    context.log.info(f"wrote {len(targets)} files to {folder} (removed {removed})")
    return dg.MaterializeResult(
        metadata={
            "dry_run": False,
            "rows_would_write": len(targets),
            "rows_written": len(targets),
            "files_removed": removed,
            "folder": str(folder),
            "files": dg.MetadataValue.md("\n".join(f"- `{n}`" for n in sorted(targets)) or "_none_"),
            **extra_metadata,
        },
        check_results=gate,
    )


# ------------------------------------------------------------------------------ published asset

#: What a loop's publish step writes, given the run (context, settings), its window and the candidates.
PlanFn = Callable[[dg.AssetExecutionContext, LoopSettings, Window, pd.DataFrame], "PublishPlan | FilePublishPlan"]
#: The loop's checks after the write: the database, what was planned, the publish metadata and any
#: further inputs (``reads``) → one outcome per extra check, in order.
VerifyFn = Callable[
    [AutonomathDatabase, "PublishPlan | FilePublishPlan", Mapping[str, Any], Mapping[str, pd.DataFrame]],
    Sequence[GateResult],
]


def review_queue(spec: LoopSpec, key_columns: Sequence[str]) -> PlanFn:
    """The plan of a loop whose rows (in the table its catalog row writes) wait for the operator's
    review: the run's partitions' rows still pending review are replaced; reviewed rows keep their
    status (``PublishPlan.preserve_columns``)."""
    table = spec.writes[0]

    def plan(context, settings: LoopSettings, window: Window, candidates: pd.DataFrame) -> PublishPlan:
        keys = list(context.partition_keys)
        return PublishPlan(
            table=table,
            rows=candidates,
            key_columns=list(key_columns),
            stale_where=f"partition_key IN ({', '.join('?' * len(keys))}) AND status = 'pending_review'",
            stale_params=tuple(keys),
            metadata={"partitions": len(keys)},
        )

    return plan


def published_asset(
    spec: LoopSpec,
    name: str | None = None,
    *,
    description: str,
    plan: PlanFn,
    kinds: set[str] | None = None,
    window_gated: bool = True,
    checks: Sequence[Gate] = (),
    verify: VerifyFn | None = None,
    reads: Sequence[str] = (),
    **asset_kwargs: Any,
) -> dg.AssetsDefinition:
    """A loop's last asset: it publishes ``plan``'s rows (or files) with ``publish``/``publish_files``.

    A loop whose catalog row names a candidates folder writes files; the others write rows through the
    database-write pool. ``window_gated``: the blocking window gate judges the loop's snapshot
    (``<short>_snapshot``) before anything is written. ``checks`` are the loop's own, non-blocking
    checks of what the write left, evaluated by ``verify``. It reads ``<short>_candidates``; its name
    is ``<table>_published`` for the table the catalog row writes (a file-writing loop names it)."""
    writes_files = spec.candidates_folder is not None
    if name is None:
        if writes_files:
            raise ValueError(f"{spec.loop_id} writes files: name its published asset")
        name = f"{spec.writes[0]}_published"
    candidates = f"{spec.short}_candidates"
    snapshot = f"{spec.short}_snapshot" if window_gated else None
    specs = [
        *(gate_specs(name, [WINDOW_GATE]) if window_gated else []),
        *gate_specs(name, checks, blocking=False),
    ] or None
    if bool(checks) != (verify is not None):
        raise ValueError(f"{name}: extra checks need a verify function and a verify function needs checks")

    @dg.asset(
        name=name,
        description=description,
        ins={"candidates": dg.AssetIn(candidates), **{read: dg.AssetIn(read) for read in reads}},
        kinds=kinds or ({"python"} if writes_files else {"sqlite"}),
        check_specs=specs,
        required_resource_keys={"loop_settings"} if writes_files else {"loop_settings", "autonomath_db"},
        pool=None if writes_files else DB_WRITE_POOL,
        **asset_defaults(spec, **asset_kwargs),
    )
    # Unannotated: under ``from __future__ import annotations`` Dagster would see the type as a string.
    def published(context, candidates: pd.DataFrame, **inputs: pd.DataFrame):
        settings: LoopSettings = context.resources.loop_settings
        planned = dataclasses.replace(plan(context, settings, window_for(context, spec), candidates), snapshot=snapshot)
        if writes_files:
            result = publish_files(context, spec, settings, planned, **planned.metadata)
        else:
            result = publish(context, spec, settings, context.resources.autonomath_db, planned, **planned.metadata)
        if verify is None:
            return result
        outcomes = verify(context.resources.autonomath_db, planned, result.metadata, inputs)
        return dg.MaterializeResult(
            metadata=result.metadata,
            check_results=[
                *(result.check_results or []),
                *(check_result(name, gate, o) for gate, o in zip(checks, outcomes)),
            ],
        )

    return published


# ----------------------------------------------------------------------------- job and schedule


@dataclass(frozen=True)
class LoopDefinition:
    """A loop as the orchestrator sees it: its Dagster objects and the three assets it reports on."""

    spec: LoopSpec
    assets: Sequence[dg.AssetsDefinition]
    snapshot: dg.AssetKey
    candidates: dg.AssetKey
    published: dg.AssetKey
    #: Checks defined apart from the assets (the gates run inside the assets' own steps).
    asset_checks: Sequence[dg.AssetChecksDefinition] = ()
    sensors: Sequence[dg.SensorDefinition] = ()

    @functools.cached_property
    def job(self) -> dg.UnresolvedAssetJobDefinition:
        return dg.define_asset_job(
            name=self.spec.job_name,
            selection=dg.AssetSelection.groups(self.spec.group_name),
            description=f"Loop {self.spec.letter} — {self.spec.title} "
            f"({self.spec.cadence_text}, window: {self.spec.window}).",
            tags={"loop_id": self.spec.loop_id},
        )

    @functools.cached_property
    def schedule(self):
        """At the catalog's JST time, for the last complete partition. Ships STOPPED."""
        spec = self.spec
        description = f"Loop {spec.letter} {spec.cadence_text}; targets the last complete partition."
        if not spec.in_progress_partition:
            return dg.build_schedule_from_partitioned_job(
                self.job,
                name=spec.schedule_name,
                description=description,
                minute_of_hour=spec.minute,
                hour_of_day=spec.hour,
                day_of_week=spec.day_of_week,
                day_of_month=spec.day_of_month,
                default_status=dg.DefaultScheduleStatus.STOPPED,
            )
        # build_schedule_from_partitioned_job targets the partition set's last key, which here is
        # the period in progress.
        cron = partitions_for(spec).get_cron_schedule(spec.minute, spec.hour, spec.day_of_week, spec.day_of_month)

        @dg.schedule(
            name=spec.schedule_name,
            cron_schedule=cron,
            job=self.job,
            execution_timezone=TIMEZONE,
            description=description,
            default_status=dg.DefaultScheduleStatus.STOPPED,
        )
        def last_complete_partition(context: dg.ScheduleEvaluationContext):
            key = last_complete_partition_key(spec, context.scheduled_execution_time)
            if key is None:
                return dg.SkipReason(f"no {spec.cadence} partition of {spec.loop_id} has ended yet")
            return dg.RunRequest(run_key=key, partition_key=key)

        return last_complete_partition

    @classmethod
    def of(cls, spec: LoopSpec, *assets: dg.AssetsDefinition) -> "LoopDefinition":
        """The loop of ``assets`` in lineage order: ``<short>_snapshot`` first, ``<short>_candidates``
        and the published asset last."""
        keys = [a.key.to_user_string() for a in assets]
        expected = {f"{spec.short}_snapshot": 0, f"{spec.short}_candidates": len(assets) - 2}
        wrong = [
            f"{want} at position {i} (got {keys[i] if 0 <= i < len(keys) else 'nothing'})"
            for want, i in expected.items()
            if not (0 <= i < len(keys) and keys[i] == want)
        ]
        if wrong:
            raise ValueError(
                f"{spec.loop_id}: assets must run snapshot → … → candidates → published; expected " + "; ".join(wrong)
            )
        return cls(
            spec=spec, assets=list(assets), snapshot=assets[0].key, candidates=assets[-2].key, published=assets[-1].key
        )

    def definitions(self) -> dg.Definitions:
        return dg.Definitions(
            assets=list(self.assets),
            asset_checks=list(self.asset_checks),
            jobs=[self.job],
            schedules=[self.schedule],
            sensors=list(self.sensors),
        )
