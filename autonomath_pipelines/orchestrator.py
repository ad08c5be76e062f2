"""Runs loops through Dagster in-process and writes the seed's JSON run report (DESIGN §6).

One failing loop never stops the others. Problems with the request itself (unknown loop, bad
partition key, missing database) raise ``UsageError`` before anything runs.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import fcntl
import json
import os
import socket
import threading
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence
from zoneinfo import ZoneInfo

import dagster as dg
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext

from autonomath_pipelines.catalog import TIMEZONE, loop_spec
from autonomath_pipelines.contract.timestamps import utc_now
from autonomath_pipelines.definitions import build_definitions
from autonomath_pipelines.lib.liveness import process_gone, run_process, this_process
from autonomath_pipelines.loops import LOOP_DEFINITIONS, LoopDefinition
from autonomath_pipelines.loops.common import DB_WRITE_POOL, RANGE_LAST_TAG, last_complete_partition_key, partitions_for
from autonomath_pipelines.operations.runs import CPU_SECONDS_TAG, root_cause
from autonomath_pipelines.resources import AutonomathDatabase, EmbeddingModel, LoopSettings, loop_resources


class UsageError(ValueError):
    """The request cannot run as given; the message says what to change."""


@dataclass
class LoopResult:
    loop_id: str
    letter: str
    status: str  # "succeeded" | "failed"
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


def select_loops(
    only: Sequence[str] | None, loops: Sequence[LoopDefinition] = LOOP_DEFINITIONS
) -> list[LoopDefinition]:
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
            raise UsageError(
                f"loop {spec.loop_id} is in the catalog but not implemented yet; implemented: {', '.join(implemented)}"
            )
        if implemented[spec.loop_id] not in selected:
            selected.append(implemented[spec.loop_id])
    return selected


def run_settings(
    only: Sequence[str] | None = None,
    *,
    execute: bool = False,
    reports_dir: str | None = None,
    repo_root: str | None = None,
    loops: Sequence[LoopDefinition] = LOOP_DEFINITIONS,
) -> LoopSettings:
    """What ``autonomath-loops run [--only …] [--execute]`` asks for: the selected loops may write with
    ``execute``, none without (whatever ``AUTONOMATH_EXECUTE_LOOPS`` says); paths from the
    environment unless given."""
    paths = {k: v for k, v in (("reports_dir", reports_dir), ("repo_root", repo_root)) if v}
    return LoopSettings(
        execute_loops=[loop.spec.loop_id for loop in select_loops(only, loops)] if execute else [], **paths
    )


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
            raise UsageError(
                f"{key!r} is not a partition of {loop.spec.loop_id} "
                f"({loop.spec.cadence} partitions in {TIMEZONE}, e.g. {example!r})"
            )
    if until is None:
        return [partition]
    keys = partitions.get_partition_keys_in_range(dg.PartitionKeyRange(partition, until))
    if not keys:
        raise UsageError(f"empty range {partition}..{until} for {loop.spec.loop_id}")
    return keys


#: In DAGSTER_HOME: held while a process opens the instance (see ``dagster_instance``).
INSTANCE_LOCK = ".autonomath-instance.lock"


def dagster_instance() -> dg.DagsterInstance:
    """The instance in DAGSTER_HOME (run history visible in the UI), else an ephemeral one.

    Opening an instance creates its SQLite storages on first use, and Dagster 1.13 lets two
    processes race on a fresh home ("table runs already exists": two scheduled loops, or a loop and
    a review, started together). Processes of this package open it one at a time, under an
    exclusive lock on a file in DAGSTER_HOME; once the tables exist the lock costs nothing."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return dg.DagsterInstance.ephemeral()
    Path(home).mkdir(parents=True, exist_ok=True)
    with open(Path(home) / INSTANCE_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        return dg.DagsterInstance.get()


#: How long a step may wait for a database-write pool slot before its run fails (env override).
SLOT_WAIT_ENV = "AUTONOMATH_SLOT_WAIT_SECONDS"
DEFAULT_SLOT_WAIT_SECONDS = 300.0
#: Runs that may still hold or wait for a pool slot.
_UNFINISHED = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def _next_claim_check_in(self) -> float:
    """Seconds until this run's next pending pool-claim check (at most 1 s, so signals stay prompt)."""
    if not self._pending_claims:
        return 0.0
    now = time.time()
    return max(0.0, min([1.0, *(ready_at - now for ready_at in self._pending_timeouts.values())]))


# Dagster 1.13 returns min([0, ...]) here, never more than 0, so a step waiting for a pool slot
# spins at 100 % CPU instead of sleeping until its next claim attempt.
InstanceConcurrencyContext.interval_to_next_pending_claim_check = _next_claim_check_in


class RunInterrupted(KeyboardInterrupt):
    """SIGTERM/SIGINT ended a run: the run is marked failed, its slots are freed, nothing else runs."""


def slot_wait_seconds(value: float | None = None) -> float:
    if value is None:
        raw = os.environ.get(SLOT_WAIT_ENV, "")
        try:
            value = float(raw) if raw else DEFAULT_SLOT_WAIT_SECONDS
        except ValueError:
            raise UsageError(f"{SLOT_WAIT_ENV} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise UsageError(f"the slot wait must be more than 0 seconds, got {value}")
    return value


def recover_abandoned_runs(instance: dg.DagsterInstance, pools: Sequence[str] = (DB_WRITE_POOL,)) -> list[str]:
    """Mark failed every unfinished run whose process is gone (``lib.liveness``), and free the pool
    slots it holds or waits for, as well as those of runs that already finished: a killed run would
    otherwise keep the database-write slot, and every later run would wait for it forever."""
    here = socket.gethostname()
    recovered = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=_UNFINISHED)):
        recorded = run_process(run.tags)
        if recorded is None or not process_gone(recorded, here):
            continue
        instance.report_run_failed(
            run,
            message=f"the process of this run (pid {recorded.pid} on {recorded.host}) "
            f"is gone; marked failed and its pool slots freed by a later "
            f"autonomath-loops run",
        )
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        recovered.append(run.run_id)
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        for pool in pools:
            info = storage.get_concurrency_info(pool)
            for run_id in info.active_run_ids | info.pending_run_ids:
                held_by = instance.get_run_by_id(run_id)
                if held_by is None or held_by.is_finished:
                    storage.free_concurrency_slots_for_run(run_id)
    return recovered


class SlotWatchdog:
    """Watches one in-process run from a thread: ends it when a step has waited for a pool slot
    longer than ``bound`` seconds, or when SIGTERM/SIGINT arrived while Dagster was between steps.

    Dagster's in-process executor waits for a slot in a loop that never checks for signals (it only
    records them, to raise at the next step) and never gives up, so the thread raises the error into
    the main thread itself; Dagster then fails the run and releases its pending claims.
    """

    POLL_SECONDS = 0.5

    def __init__(
        self, instance: dg.DagsterInstance, run_id: str, bound: float, pools: Sequence[str] = (DB_WRITE_POOL,)
    ):
        self.instance, self.run_id, self.bound, self.pools = instance, run_id, bound, tuple(pools)
        self.timeout_error: str | None = None
        self.signalled = False
        self._stop = threading.Event()
        self._main = threading.main_thread().ident
        self._thread = threading.Thread(target=self._watch, name=f"slot-watchdog-{run_id[:8]}", daemon=True)

    def __enter__(self) -> "SlotWatchdog":
        if threading.current_thread() is threading.main_thread():
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        from dagster._utils.interrupts import check_captured_interrupt

        waiting_since: float | None = None
        signal_seen = 0
        storage = self.instance.event_log_storage
        while not self._stop.wait(self.POLL_SECONDS):
            # Inside a step Dagster raises on the signal itself; a flag still set a poll later
            # means the main thread is in a loop that will not look at it.
            signal_seen = signal_seen + 1 if check_captured_interrupt() else 0
            if signal_seen >= 2:
                self.signalled = True
                self._raise_in_main(RunInterrupted)
                return
            if not storage.supports_global_concurrency_limits:
                continue
            infos = [storage.get_concurrency_info(pool) for pool in self.pools]
            waiting = [info for info in infos if self.run_id in info.pending_run_ids]
            if not waiting:
                waiting_since = None
                continue
            waiting_since = waiting_since or time.monotonic()
            if time.monotonic() - waiting_since > self.bound:
                info = waiting[0]
                holders = sorted(info.active_run_ids - {self.run_id}) or ["(none recorded)"]
                self.timeout_error = (
                    f"gave up after {self.bound:g} s waiting for a slot of pool "
                    f"{info.concurrency_key!r}, held by run {', '.join(holders)} "
                    f"(set {SLOT_WAIT_ENV} to wait longer)"
                )
                self._raise_in_main(TimeoutError)
                return

    def _raise_in_main(self, error: type[BaseException]) -> None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._main), ctypes.py_object(error))


def _interrupted(outcome: dg.ExecuteInProcessResult) -> bool:
    return any(
        e.event_type == dg.DagsterEventType.STEP_FAILURE
        and e.step_failure_data.error
        and "Interrupt" in root_cause(e.step_failure_data.error).split(":")[0]
        for e in outcome.all_events
    )


def _execute(
    job: dg.JobDefinition,
    loop: LoopDefinition,
    key: str,
    instance: dg.DagsterInstance,
    dry_run: bool,
    log_level: str,
    slot_wait: float = DEFAULT_SLOT_WAIT_SECONDS,
    range_last: str | None = None,
) -> LoopResult:
    spec = loop.spec
    result = LoopResult(
        spec.loop_id, spec.letter, "failed", key, None, dry_run, cost_ceiling_cpu_seconds=spec.cost_ceiling_cpu_min * 60
    )
    run_id = str(uuid.uuid4())  # known before the run starts, for the watchdog
    wall, cpu = time.perf_counter(), time.process_time()
    watchdog = SlotWatchdog(instance, run_id, slot_wait)
    try:
        with watchdog:
            outcome = job.execute_in_process(
                partition_key=key,
                instance=instance,
                raise_on_error=False,
                run_id=run_id,
                run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
                tags={
                    "autonomath/launched_by": "autonomath-loops run",
                    **this_process().tags(),
                    **({RANGE_LAST_TAG: range_last} if range_last else {}),
                },
            )
    except Exception as exc:  # noqa: BLE001 - one loop's crash is reported, never fatal to the others
        result.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        return result
    finally:
        result.wall_seconds = round(time.perf_counter() - wall, 3)
        result.cpu_seconds = round(time.process_time() - cpu, 3)
        # The run is over in this process, whatever happened: nothing of it may keep a slot.
        if instance.event_log_storage.supports_global_concurrency_limits:
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)
    result.run_id = outcome.run_id
    if watchdog.timeout_error:
        result.error = watchdog.timeout_error
        return result
    if watchdog.signalled or _interrupted(outcome):
        result.error = "interrupted by SIGTERM/SIGINT; the run is marked failed and its slots are freed"
        raise RunInterrupted(result)
    # The run's measured CPU, for the loop scorecard (runs launched elsewhere report step time).
    instance.add_run_tags(outcome.run_id, {CPU_SECONDS_TAG: f"{result.cpu_seconds:.3f}"})
    for event in outcome.get_asset_materialization_events():
        materialization = event.materialization
        metadata = {k: v.value for k, v in materialization.metadata.items()}
        result.asset_metrics[materialization.asset_key.to_user_string()] = {
            k: v for k, v in metadata.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        if materialization.asset_key == loop.snapshot:
            result.scanned = int(metadata.get("dagster/row_count", 0))
        elif materialization.asset_key == loop.candidates:
            # A loop whose candidate frame also holds rows it withholds (C, H) says how many it proposes.
            result.actions_proposed = int(metadata.get("candidates_proposed", metadata.get("dagster/row_count", 0)))
        elif materialization.asset_key == loop.published:
            result.actions_executed = int(metadata.get("rows_written", 0))
            # What the publish step did, not what was asked: it alone knows whether it wrote.
            result.dry_run = bool(metadata.get("dry_run", result.dry_run))
    for event in outcome.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if not evaluation.passed:
                result.checks_failed.append(f"{evaluation.check_name}: {evaluation.description or 'failed'}")
    if outcome.success:
        result.status = "succeeded"
    else:
        failures = [e for e in outcome.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
        messages = [
            f"{e.step_key}: {root_cause(e.step_failure_data.error)}"
            for e in failures
            if e.step_failure_data and e.step_failure_data.error
        ]
        result.error = "; ".join(messages + result.checks_failed) or "run failed"
    return result


def run_loops(
    database: AutonomathDatabase,
    settings: LoopSettings,
    *,
    only: Sequence[str] | None = None,
    partition: str | None = None,
    until: str | None = None,
    storage_dir: str | None = None,
    embeddings: EmbeddingModel | None = None,
    instance: dg.DagsterInstance | None = None,
    log_level: str = "WARNING",
    progress: Callable[[str], None] = lambda line: None,
    loops: Sequence[LoopDefinition] = LOOP_DEFINITIONS,
    slot_wait: float | None = None,
) -> RunReport:
    """Run the selected loops (each partition a Dagster run) over ``database`` with ``settings`` (which
    loops may write, where reports and files go) and write the report.

    First recovers runs whose process is gone (``recover_abandoned_runs``). A step waits at most
    ``slot_wait`` seconds (default ``$AUTONOMATH_SLOT_WAIT_SECONDS``, else 300) for a pool slot.
    SIGTERM/SIGINT ends the current run (marked failed, slots freed), writes the report of the runs
    so far and raises ``RunInterrupted``."""
    available = tuple(loops)
    loops = select_loops(only, available)
    keys = {loop.spec.loop_id: partition_keys_for(loop, partition, until) for loop in loops}
    database.require_exists()
    defs = build_definitions(
        loop_resources(database, settings, storage_dir=storage_dir, embeddings=embeddings), loops=available
    )
    bound = slot_wait_seconds(slot_wait)
    instance = instance or dagster_instance()
    for run_id in recover_abandoned_runs(instance):
        progress(f"recovered run {run_id}: its process is gone; marked failed, its pool slots freed")
    results: list[LoopResult] = []
    total_runs = sum(len(k) for k in keys.values())
    for loop in loops:
        job = defs.resolve_job_def(loop.spec.job_name)
        execute = settings.execution_enabled(loop.spec.loop_id)
        for key in keys[loop.spec.loop_id]:
            progress(
                f"[{len(results) + 1}/{total_runs}] loop {loop.spec.letter} {loop.spec.loop_id} "
                f"partition {key} ({'execute' if execute else 'dry run'}) ..."
            )
            try:
                result = _execute(
                    job,
                    loop,
                    key,
                    instance,
                    dry_run=not execute,
                    log_level=log_level,
                    slot_wait=bound,
                    range_last=keys[loop.spec.loop_id][-1] if until else None,
                )
            except RunInterrupted as interrupted:
                results.append(interrupted.args[0])
                progress(f"    failed: {interrupted.args[0].error}")
                _report(results, database, settings)
                raise
            results.append(result)
            progress(
                f"    {result.status}: scanned {result.scanned}, proposed {result.actions_proposed}, "
                f"executed {result.actions_executed}, {result.cpu_seconds:.1f} CPU s"
                + (f" — {result.error}" if result.error else "")
            )
    return _report(results, database, settings)


def _report(results: list[LoopResult], database: AutonomathDatabase, settings: LoopSettings) -> RunReport:
    succeeded = sum(r.status == "succeeded" for r in results)
    report = RunReport(
        ts=dt.datetime.now(ZoneInfo(TIMEZONE)).replace(microsecond=0).isoformat(),
        dry_run=all(r.dry_run for r in results),
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
