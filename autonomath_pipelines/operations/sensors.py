"""Data-driven sensors (DESIGN §4): a loop runs when its data says so, not only at its cadence.

- ``source_change_signals_sensor``: new ``source_change_signals`` rows → loop I on the week in progress.
- ``wrong_answer_burst_sensor``: a burst of wrong-answer feedback → loop A on the week in progress.
- ``month_complete_sensor``: ``query_log`` has moved past a month's end (JST) → the monthly loops
  (B, D, G, J) on that month.

All ship STOPPED. They read the AutonoMath database read-only through the ``autonomath_db``
resource; a missing database, table or column, a malformed cursor or setting is a skip naming the
problem, never an error tick. Cursors and decisions are pure functions in ``lib/triggers.py``.
"""

import datetime as dt
import inspect
import os
from typing import Callable, Sequence

import dagster as dg

from autonomath_pipelines.catalog import PARTITIONS_START
from autonomath_pipelines.contract.schema import SchemaError
from autonomath_pipelines.contract.timestamps import utc_now
from autonomath_pipelines.lib.badrows import ISO_UTC_GLOB
from autonomath_pipelines.lib.triggers import (
    BurstState,
    burst_decision,
    burst_settings,
    months_to_request,
    parse_id_cursor,
    parse_utc,
    reports_from_rows,
)
from autonomath_pipelines.loops import LOOP_DEFINITIONS
from autonomath_pipelines.loops.common import LoopDefinition, in_progress_partition_key
from autonomath_pipelines.resources import AutonomathDatabase, DatabaseFileError

Clock = Callable[[], dt.datetime]

#: A liveness scan arrives as a batch over minutes: at most one loop I run per half hour.
SIGNALS_INTERVAL_SECONDS = 1800
#: A burst of wrong answers is worth reacting to within minutes.
BURST_INTERVAL_SECONDS = 300
#: Month ends are rare; an hour's delay costs nothing.
MONTH_INTERVAL_SECONDS = 3600
#: Months requested per evaluation after the sensor was off; later months follow at the next ones.
MAX_MONTHS_PER_EVALUATION = 3
#: Feedback rows read per evaluation, so one evaluation stays well inside Dagster's time limit after
#: a long pause; the rest are read at the next evaluations.
MAX_REPORTS_PER_EVALUATION = 50_000
TRIGGER_TAG = "autonomath/trigger"


def _stopped_sensor(**kwargs):
    """``@dg.sensor`` shipping STOPPED, named after the function and described in the UI by its docstring."""

    def decorate(fn):
        return dg.sensor(
            name=fn.__name__, description=inspect.getdoc(fn), default_status=dg.DefaultSensorStatus.STOPPED, **kwargs
        )(fn)

    return decorate


def _unavailable(database: AutonomathDatabase, table: str, sensor: str) -> str | None:
    """Why ``table`` cannot be read now (missing database, table or column), else None."""
    try:
        database.preflight([table], context=sensor)
    except (DatabaseFileError, SchemaError) as exc:
        return str(exc)
    return None


def _require_in_progress(loop: LoopDefinition) -> None:
    if not loop.spec.in_progress_partition:
        raise ValueError(
            f"{loop.spec.loop_id} has no in-progress partition for a sensor to run "
            "(set in_progress_partition in catalog.py)"
        )


def build_source_change_signals_sensor(loop: LoopDefinition, clock: Clock = utc_now) -> dg.SensorDefinition:
    """The sensor running ``loop`` (loop I) when new liveness signals arrive."""
    _require_in_progress(loop)
    spec = loop.spec

    @_stopped_sensor(job=loop.job, minimum_interval_seconds=SIGNALS_INTERVAL_SECONDS)
    def source_change_signals_sensor(context: dg.SensorEvaluationContext, autonomath_db: AutonomathDatabase):
        """New rows in `source_change_signals` → loop I on the week in progress, so the re-fetch queue
        reflects a liveness scan as soon as it lands.

        Cursor: the last signal id seen (rows are taken by id, whatever their `observed_at`). The first
        evaluation starts after the newest signal and requests nothing: history is not replayed."""
        problem = _unavailable(autonomath_db, "source_change_signals", "source_change_signals_sensor")
        if problem:
            return dg.SkipReason(problem)
        try:
            after = parse_id_cursor(context.cursor)
        except ValueError as exc:
            return dg.SkipReason(str(exc))
        with autonomath_db.read_only() as conn:
            if after is None:
                (newest,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM source_change_signals").fetchone()
                return dg.SensorResult(
                    skip_reason=f"first evaluation: watching signals after id {newest} "
                    "(earlier signals are not replayed)",
                    cursor=str(newest),
                )
            new, newest = conn.execute(
                "SELECT COUNT(*), MAX(id) FROM source_change_signals WHERE id > ?", (after,)
            ).fetchone()
        if not new:
            return dg.SkipReason(f"no source_change_signals after id {after}")
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    partition_key=in_progress_partition_key(spec, clock()),
                    run_key=f"source_change_signals:{newest}",
                    tags={
                        TRIGGER_TAG: "source_change_signals",
                        "autonomath/new_signals": str(new),
                        "autonomath/max_signal_id": str(newest),
                    },
                )
            ],
            cursor=str(newest),
        )

    return source_change_signals_sensor


def build_wrong_answer_burst_sensor(
    loop: LoopDefinition, *, threshold: int | None = None, window_hours: float | None = None, clock: Clock = utc_now
) -> dg.SensorDefinition:
    """The sensor running ``loop`` (loop A) on a burst of wrong-answer reports. ``threshold`` and
    ``window_hours`` override the environment (``AUTONOMATH_BURST_THRESHOLD``/``_WINDOW_HOURS``)."""
    _require_in_progress(loop)
    spec = loop.spec

    @_stopped_sensor(job=loop.job, minimum_interval_seconds=BURST_INTERVAL_SECONDS)
    def wrong_answer_burst_sensor(context: dg.SensorEvaluationContext, autonomath_db: AutonomathDatabase):
        """A burst of wrong-answer feedback → loop A on the week in progress: at least
        `AUTONOMATH_BURST_THRESHOLD` (default 20) reports stamped within the last
        `AUTONOMATH_BURST_WINDOW_HOURS` (default 24) and after the previous request.

        Cursor: the last `customer_feedback` id seen, the time of the last request and the reports
        still counting. A burst requests one run; the next needs as many new reports. The first
        evaluation starts after the newest feedback row: history is not replayed."""
        try:
            settings = burst_settings(os.environ, threshold, window_hours)
        except ValueError as exc:
            return dg.SkipReason(str(exc))
        problem = _unavailable(autonomath_db, "customer_feedback", "wrong_answer_burst_sensor")
        if problem:
            return dg.SkipReason(problem)
        try:
            state = BurstState.from_cursor(context.cursor) if context.cursor else None
        except ValueError as exc:
            return dg.SkipReason(str(exc))
        with autonomath_db.read_only() as conn:
            if state is None:
                (newest,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM customer_feedback").fetchone()
                return dg.SensorResult(
                    skip_reason=f"first evaluation: watching feedback after id {newest} "
                    "(earlier reports are not replayed)",
                    cursor=BurstState(newest).to_cursor(),
                )
            # A malformed ts (not contract text, or not even UTF-8) is read as NULL: counted as undated.
            rows = conn.execute(
                f"SELECT id, CASE WHEN ts GLOB '{ISO_UTC_GLOB}' THEN ts END FROM customer_feedback "
                "WHERE wrong_answer = 1 AND id > ? "
                "ORDER BY id LIMIT ?",
                (state.last_id, MAX_REPORTS_PER_EVALUATION),
            ).fetchall()
        now = clock()
        decision = burst_decision(reports_from_rows(rows), state, now, settings)
        cursor = decision.state.to_cursor()
        if not decision.fire:
            return dg.SensorResult(
                skip_reason=(
                    f"{decision.counted} of {settings.threshold} wrong-answer reports in the last "
                    f"{settings.window_hours:g} h since the last request ({decision.new_reports} new)"
                ),
                cursor=cursor,
            )
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    partition_key=in_progress_partition_key(spec, now),
                    run_key=f"wrong_answer_burst:{decision.state.last_id}",
                    tags={
                        TRIGGER_TAG: "wrong_answer_burst",
                        "autonomath/wrong_answer_reports": str(decision.counted),
                        "autonomath/burst_threshold": str(settings.threshold),
                        "autonomath/burst_window_hours": f"{settings.window_hours:g}",
                        "autonomath/max_feedback_id": str(decision.state.last_id),
                    },
                )
            ],
            cursor=cursor,
        )

    return wrong_answer_burst_sensor


def build_month_complete_sensor(loops: Sequence[LoopDefinition], clock: Clock = utc_now) -> dg.SensorDefinition:
    """The sensor running the monthly ``loops`` on each month whose data is complete."""
    monthly = [loop for loop in loops if loop.spec.cadence == "monthly"]
    if not monthly:
        raise ValueError("no monthly loop to run")
    first = dt.date.fromisoformat(PARTITIONS_START)

    @_stopped_sensor(jobs=[loop.job for loop in monthly], minimum_interval_seconds=MONTH_INTERVAL_SECONDS)
    def month_complete_sensor(context: dg.SensorEvaluationContext, autonomath_db: AutonomathDatabase):
        """A calendar month (Asia/Tokyo) of data is complete → each monthly loop (B, D, G, J) on it.

        Complete means `query_log` holds a row stamped at or after the month's end: ingestion has
        moved past it. Cursor: the last month requested. The first evaluation requests only the
        latest complete month; months missed while the sensor was off follow in order, at most 3
        per evaluation."""
        problem = _unavailable(autonomath_db, "query_log", "month_complete_sensor")
        if problem:
            return dg.SkipReason(problem)
        try:
            last = dt.date.fromisoformat(context.cursor) if context.cursor else None
        except ValueError:
            return dg.SkipReason(f"cursor {context.cursor!r} is not a month (YYYY-MM-01); reset the sensor's cursor")
        with autonomath_db.read_only() as conn:
            # Only contract timestamps: 'yesterday' or '2026/11/20' sort after every ISO date and would
            # stall the sensor on one malformed row (lib/badrows.py).
            (newest,) = conn.execute(f"SELECT MAX(ts) FROM query_log WHERE ts GLOB '{ISO_UTC_GLOB}'").fetchone()
        try:
            latest = parse_utc(newest) if newest is not None else None
        except ValueError:
            return dg.SkipReason(f"query_log's newest ts {newest!r} is not an ISO-8601 timestamp")
        months = months_to_request(latest, last, clock(), first, MAX_MONTHS_PER_EVALUATION)
        if not months:
            return dg.SkipReason(
                f"no newly complete month (query_log's newest row: {newest}; last month requested: {last or 'none'})"
            )
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    job_name=loop.spec.job_name,
                    partition_key=month.isoformat(),
                    run_key=f"{loop.spec.loop_id}:{month.isoformat()}",
                    tags={TRIGGER_TAG: "month_complete", "autonomath/query_log_newest_ts": newest},
                )
                for month in months
                for loop in monthly
            ],
            cursor=months[-1].isoformat(),
        )

    return month_complete_sensor


def build_sensors(loops: Sequence[LoopDefinition] = LOOP_DEFINITIONS) -> list[dg.SensorDefinition]:
    """The data-driven sensors of ``loops`` (a sensor whose loops are absent is left out), all STOPPED."""
    by_id = {loop.spec.loop_id: loop for loop in loops}
    sensors = []
    if "loop_i_doc_freshness" in by_id:
        sensors.append(build_source_change_signals_sensor(by_id["loop_i_doc_freshness"]))
    if "loop_a_hallucination_guard" in by_id:
        sensors.append(build_wrong_answer_burst_sensor(by_id["loop_a_hallucination_guard"]))
    if any(loop.spec.cadence == "monthly" for loop in loops):
        sensors.append(build_month_complete_sensor(loops))
    return sensors
