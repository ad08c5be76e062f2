"""Operating the loops: review from the UI, the weekly digest and scorecard, sensors."""

import dagster as dg

from autonomath_pipelines.loops import LOOP_DEFINITIONS, LoopDefinition


def operations_definitions(loops: tuple[LoopDefinition, ...] = LOOP_DEFINITIONS) -> dg.Definitions:
    """The operator's Dagster objects (group ``operations``), for the given loops. Schedules and sensors
    ship STOPPED."""
    from autonomath_pipelines.operations.digest import (
        self_improvement_digest,
        self_improvement_weekly_job,
        self_improvement_weekly_schedule,
    )
    from autonomath_pipelines.operations.failures import loop_failure_sensor
    from autonomath_pipelines.operations.review_job import review, review_queue
    from autonomath_pipelines.operations.scorecard import loop_scorecard
    from autonomath_pipelines.operations.sensors import build_sensors

    return dg.Definitions(
        assets=[review_queue, self_improvement_digest, loop_scorecard],
        jobs=[review, self_improvement_weekly_job],
        schedules=[self_improvement_weekly_schedule],
        sensors=[*build_sensors(loops), loop_failure_sensor],
    )
