"""Failed loop runs, recorded as they happen: the run-failure sensor and its log (DESIGN §4 sensors).

The sensor appends one JSON line per failed loop run to ``<reports_dir>/loop_failures.jsonl``: run id,
loop, partition, when it failed and the root-cause error (the user's exception, not Dagster's
wrappers). A run is recorded once however often the sensor sees it. The digest quotes the error of
a loop's newest failed run from this log, or from the run's event log when the sensor was off.
"""

import datetime as dt
import json
from pathlib import Path
from typing import Any, Sequence

import dagster as dg

from autonomath_pipelines.contract.timestamps import iso_utc, utc_now
from autonomath_pipelines.operations.history import asset_loops, partition_key_of
from autonomath_pipelines.operations.runs import LOOP_TAG, loop_of_run, root_cause
from autonomath_pipelines.resources import LoopSettings

FAILURE_LOG_NAME = "loop_failures.jsonl"


def failure_log_path(reports_dir: Path) -> Path:
    return Path(reports_dir) / FAILURE_LOG_NAME


def read_failure_log(path: Path) -> dict[str, dict[str, Any]]:
    """Recorded failures by run id; a missing log is empty and unreadable lines are skipped."""
    if not path.exists():
        return {}
    records = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a crash must not hide the others
        if isinstance(record, dict) and record.get("run_id"):
            records[record["run_id"]] = record
    return records


def append_failure(path: Path, record: dict[str, Any]) -> bool:
    """Append ``record`` unless its run is already in the log; True when it was written."""
    if record["run_id"] in read_failure_log(path):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    torn = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    with path.open("a", encoding="utf-8") as handle:
        handle.write(("\n" if torn else "") + json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
    return True


def describe_failure(step_failures: Sequence[dg.DagsterEvent], run_failure: dg.DagsterEvent | None) -> str:
    """``step: Type: message`` per failed step, else the run failure's own root cause or message."""
    messages = [
        f"{event.step_key}: {root_cause(event.step_failure_data.error)}"
        for event in step_failures
        if event.step_failure_data is not None and event.step_failure_data.error is not None
    ]
    if messages:
        return "; ".join(messages)
    error = getattr(run_failure.event_specific_data, "error", None) if run_failure is not None else None
    if error is not None:
        return root_cause(error)
    return (run_failure.message if run_failure is not None else None) or "run failed"


def run_error(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """The failure of ``run_id`` from its event log (only failure events are read); None if it has none."""
    records = instance.get_records_for_run(
        run_id, of_type={dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE}
    ).records
    events = [r.event_log_entry.dagster_event for r in records if r.event_log_entry.dagster_event is not None]
    steps = [e for e in events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    run = next((e for e in events if e.event_type == dg.DagsterEventType.RUN_FAILURE), None)
    return describe_failure(steps, run) if steps or run is not None else None


def last_errors(instance: dg.DagsterInstance, run_ids: Sequence[str], reports_dir: Path) -> dict[str, str]:
    """The error of each run: as the sensor recorded it, else from the event log."""
    logged = read_failure_log(failure_log_path(reports_dir))
    errors = {}
    for run_id in run_ids:
        error = logged[run_id].get("error") if run_id in logged else run_error(instance, run_id)
        if error:
            errors[run_id] = error
    return errors


def failure_record(
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    step_failures: Sequence[dg.DagsterEvent],
    run_failure: dg.DagsterEvent | None,
    loop_id: str | None = None,
) -> dict[str, Any]:
    record = instance.get_run_record_by_id(run.run_id)
    ended = record.end_time if record is not None else None
    failed_at = utc_now() if ended is None else dt.datetime.fromtimestamp(ended, dt.timezone.utc)
    return {
        "run_id": run.run_id,
        "loop_id": loop_id or run.tags.get(LOOP_TAG),
        "job_name": run.job_name,
        "partition_key": partition_key_of(run.tags),
        "failed_at": iso_utc(failed_at),
        "error": describe_failure(step_failures, run_failure),
    }


@dg.run_failure_sensor(
    name="loop_failure_sensor",
    # Every job of the code location: loop jobs, and asset runs launched from the UI (``__ASSET_JOB``),
    # which are loop runs when their selection lies within one loop.
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Records every failed loop run (run id, loop, partition, time, root-cause error) in "
    "<reports>/loop_failures.jsonl; the weekly digest quotes it in its consecutive-failure warnings.",
)
def loop_failure_sensor(context: dg.RunFailureSensorContext, loop_settings: LoopSettings) -> None:
    loop_id = loop_of_run(context.dagster_run, asset_loops())
    if loop_id is None:
        return  # not a loop run (the review job, the weekly digest)
    record = failure_record(
        context.instance, context.dagster_run, context.get_step_failure_events(), context.failure_event, loop_id
    )
    path = failure_log_path(loop_settings.reports_path())
    if append_failure(path, record):
        context.log.info(f"recorded failed run {record['run_id']} of {record['loop_id']}: {record['error']}")
