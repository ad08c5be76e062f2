"""Which loop a Dagster run belongs to: the loop job's tag, or a UI materialization within one loop."""

import dagster as dg

from autonomath_pipelines.operations.history import asset_loops
from autonomath_pipelines.operations.runs import ASSET_JOB, LOOP_TAG, loop_of_run


def _run(tags=None, selection=None) -> dg.DagsterRun:
    return dg.DagsterRun(
        job_name=ASSET_JOB if selection else "loop_h_cache_warming_job",
        run_id="r1",
        tags=tags or {},
        asset_selection=frozenset(map(dg.AssetKey, selection or [])),
    )


def test_a_loop_job_run_is_known_by_its_tag():
    assert loop_of_run(_run(tags={LOOP_TAG: "loop_h_cache_warming"}), asset_loops()) == "loop_h_cache_warming"


def test_a_ui_materialization_within_one_loop_belongs_to_that_loop():
    owners = asset_loops()
    assert (
        loop_of_run(_run(selection=["cache_warming_snapshot", "query_cache_published"]), owners)
        == "loop_h_cache_warming"
    )
    assert loop_of_run(_run(selection=["cache_warming_snapshot", "gold_expansion_snapshot"]), owners) is None
    assert loop_of_run(_run(selection=["loop_scorecard"]), owners) is None
