"""What makes a Dagster run a loop run, shared by the orchestrator and the operations layer: its tags,
which loop it ran, and its failure as one line."""

from __future__ import annotations

from typing import Mapping

import dagster as dg

#: Every loop job tags its runs with its loop id (LoopDefinition.job).
LOOP_TAG = "loop_id"
#: CPU seconds ``autonomath-loops run`` measured for a run (runs launched elsewhere have none).
CPU_SECONDS_TAG = "autonomath/cpu_seconds"
#: The job Dagster runs when assets are materialized from the UI instead of through a loop job.
ASSET_JOB = "__ASSET_JOB"


def loop_of_run(run: dg.DagsterRun, asset_loops: Mapping[dg.AssetKey, str]) -> str | None:
    """The loop a run belongs to: its ``loop_id`` tag, else (an asset materialization launched from
    the UI) the one loop whose assets it selected; None for anything else."""
    if LOOP_TAG in run.tags:
        return run.tags[LOOP_TAG]
    selected = run.asset_selection or frozenset()
    loops = {asset_loops.get(key) for key in selected}
    return loops.pop() if len(loops) == 1 and None not in loops else None


def root_cause(error) -> str:
    """The user's exception behind Dagster's wrappers, as ``Type: message`` on one line."""
    while error.cause is not None:
        error = error.cause
    message = " ".join(error.message.strip().split("\n")).strip()
    prefix = f"{error.cls_name}: " if error.cls_name and not message.split(":")[0].endswith(error.cls_name) else ""
    return prefix + message
