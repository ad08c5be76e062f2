"""Runs loops through Dagster in-process and writes the seed's JSON run report (DESIGN §6).

One failing loop never stops the others. Problems with the request itself (unknown loop, bad
partition key, missing database) raise ``UsageError`` before anything runs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence
from zoneinfo import ZoneInfo

import dagster as dg

from autonomath_pipelines.catalog import TIMEZONE, loop_spec
from autonomath_pipelines.definitions import build_definitions
from autonomath_pipelines.loops import LOOPS, LoopDefinition
from autonomath_pipelines.loops.common import last_complete_partition_key, partitions_for, utc_now
from autonomath_pipelines.resources import AutonomathDatabase, EmbeddingModel, LoopSettings
from autonomath_pipelines.runs import CPU_SECONDS_TAG, root_cause


class UsageError(ValueError):
    """The request cannot run as given; the message says what to change."""


@dataclass
class LoopResult:
    loop_id: str
    letter: str
    status: str                      # "succeeded" | "failed"
    partition_key: str
    run_id: str | None
    dry_run: bool
    scanned: int = 0
    actions_proposed: int = 0
    actions_executed: int = 0
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    cost_ceiling_cpu_seconds: float = 0.0
    checks_failed: list[str] = field(default_factory=list)
    error: str | None = None
    #: Numeric metadata of every materialized asset ({asset: {key: number}}): the figures the UI plots.
    asset_metrics: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class RunReport:
    ts: str
    dry_run: bool
    loops_total: int
    loops_succeeded: int
    loops_failed: int
    totals: dict[str, int]
    results: list[LoopResult]
    database: str
    report_path: str | None = None

    @property
    def ok(self) -> bool:
        return self.loops_failed == 0

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("report_path")
        return data


def select_loops(only: Sequence[str] | None, loops: Sequence[LoopDefinition] = LOOPS) -> list[LoopDefinition]:
    implemented = {loop.spec.loop_id: loop for loop in loops}
    if not only:
        return list(loops)
    selected = []
    for requested in only:
        try:
            spec = loop_spec(requested)
        except KeyError as exc:
            raise UsageError(exc.args[0]) from None
        if spec.loop_id not in implemented:
            raise UsageError(f"loop {spec.loop_id} is in the catalog but not implemented yet; "
                             f"implemented: {', '.join(implemented)}")
        if implemented[spec.loop_id] not in selected:
            selected.append(implemented[spec.loop_id])
    return selected


def partition_keys_for(loop: LoopDefinition, partition: str | None, until: str | None = None) -> list[str]:
    """Keys to run: the last complete partition by default, or ``partition`` (..``until``), which may
    be the partition in progress for loops that have one (``LoopSpec.in_progress_partition``)."""
    partitions = partitions_for(loop.spec)
    example = last_complete_partition_key(loop.spec, utc_now())
    if partition is None:
        if until is not None:
            raise UsageError("--to needs --partition/--from as the first partition of the range")
        if example is None:
            raise UsageError(f"loop {loop.spec.loop_id} has no complete partition yet")
        return [example]
    for key in filter(None, (partition, until)):
        if not partitions.has_partition_key(key):
            raise UsageError(f"{key!r} is not a partition of {loop.spec.loop_id} "
                             f"({loop.spec.cadence} partitions in {TIMEZONE}, e.g. {example!r})")
    if until is None:
        return [partition]
    keys = partitions.get_partition_keys_in_range(dg.PartitionKeyRange(partition, until))
    if not keys:
        raise UsageError(f"empty range {partition}..{until} for {loop.spec.loop_id}")
    return keys


def dagster_instance() -> dg.DagsterInstance:
    """The instance in DAGSTER_HOME (run history visible in the UI), else an ephemeral one."""
    return dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()


def _execute(job: dg.JobDefinition, loop: LoopDefinition, key: str, instance: dg.DagsterInstance,
             dry_run: bool, log_level: str) -> LoopResult:
    spec = loop.spec
    result = LoopResult(spec.loop_id, spec.letter, "failed", key, None, dry_run,
                        cost_ceiling_cpu_seconds=spec.cost_ceiling_cpu_min * 60)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        outcome = job.execute_in_process(
            partition_key=key, instance=instance, raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
            tags={"autonomath/launched_by": "autonomath-loops run"},
        )
    except Exception as exc:  # noqa: BLE001 - one loop's crash is reported, never fatal to the others
        result.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        return result
    finally:
        result.wall_seconds = round(time.perf_counter() - wall, 3)
        result.cpu_seconds = round(time.process_time() - cpu, 3)
    result.run_id = outcome.run_id
    # The run's measured CPU, for the loop scorecard (runs launched elsewhere report step time).
    instance.add_run_tags(outcome.run_id, {CPU_SECONDS_TAG: f"{result.cpu_seconds:.3f}"})
    for event in outcome.get_asset_materialization_events():
        materialization = event.materialization
        metadata = {k: v.value for k, v in materialization.metadata.items()}
        result.asset_metrics[materialization.asset_key.to_user_string()] = {
            k: v for k, v in metadata.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if materialization.asset_key == loop.snapshot:
            result.scanned = int(metadata.get("dagster/row_count", 0))
        elif materialization.asset_key == loop.candidates:
            result.actions_proposed = int(metadata.get("dagster/row_count", 0))
        elif materialization.asset_key == loop.published:
            result.actions_executed = int(metadata.get("rows_written", 0))
    for event in outcome.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if not evaluation.passed:
                result.checks_failed.append(f"{evaluation.check_name}: {evaluation.description or 'failed'}")
    if outcome.success:
        result.status = "succeeded"
    else:
        failures = [e for e in outcome.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
        messages = [f"{e.step_key}: {root_cause(e.step_failure_data.error)}"
                    for e in failures if e.step_failure_data and e.step_failure_data.error]
        result.error = "; ".join(messages + result.checks_failed) or "run failed"
    return result


def run_loops(*, only: Sequence[str] | None = None, partition: str | None = None, until: str | None = None,
              execute: bool = False, db_path: str | None = None, reports_dir: str | None = None,
              storage_dir: str | None = None, embedding_cache: str | None = None,
              instance: dg.DagsterInstance | None = None,
              log_level: str = "WARNING", progress: Callable[[str], None] = lambda line: None,
              loops: Sequence[LoopDefinition] = LOOPS) -> RunReport:
    """Run the selected loops (each partition a Dagster run) and write the report."""
    available = tuple(loops)
    loops = select_loops(only, available)
    keys = {loop.spec.loop_id: partition_keys_for(loop, partition, until) for loop in loops}
    database = AutonomathDatabase(path=db_path) if db_path else AutonomathDatabase()
    database.require_exists()
    settings = LoopSettings(execute_loops=[loop.spec.loop_id for loop in loops] if execute else [],
                            **({"reports_dir": reports_dir} if reports_dir else {}))
    embeddings = EmbeddingModel(cache_path=embedding_cache) if embedding_cache else None
    defs = build_definitions(database=database, settings=settings, storage_dir=storage_dir, embeddings=embeddings,
                             loops=available)
    instance = instance or dagster_instance()
    results: list[LoopResult] = []
    total_runs = sum(len(k) for k in keys.values())
    for loop in loops:
        job = defs.resolve_job_def(loop.spec.job_name)
        for key in keys[loop.spec.loop_id]:
            progress(f"[{len(results) + 1}/{total_runs}] loop {loop.spec.letter} {loop.spec.loop_id} "
                     f"partition {key} ({'execute' if execute else 'dry run'}) ...")
            result = _execute(job, loop, key, instance, dry_run=not execute, log_level=log_level)
            results.append(result)
            progress(f"    {result.status}: scanned {result.scanned}, proposed {result.actions_proposed}, "
                     f"executed {result.actions_executed}, {result.cpu_seconds:.1f} CPU s"
                     + (f" — {result.error}" if result.error else ""))
    succeeded = sum(r.status == "succeeded" for r in results)
    report = RunReport(
        ts=dt.datetime.now(ZoneInfo(TIMEZONE)).replace(microsecond=0).isoformat(),
        dry_run=not execute,
        loops_total=len(results),
        loops_succeeded=succeeded,
        loops_failed=len(results) - succeeded,
        totals={
            "scanned": sum(r.scanned for r in results),
            "actions_proposed": sum(r.actions_proposed for r in results),
            "actions_executed": sum(r.actions_executed for r in results),
        },
        results=results,
        database=str(database.resolved_path()),
    )
    report.report_path = str(write_report(report, settings.reports_path()))
    return report


def write_report(report: RunReport, reports_dir: Path) -> Path:
    """``<reports_dir>/self_improve_runs/<YYYY-MM-DD>.json`` (JST date), written atomically."""
    folder = reports_dir / "self_improve_runs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{report.ts[:10]}.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report.to_json(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
