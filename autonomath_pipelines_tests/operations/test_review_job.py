"""The review job and queue asset: the UI's way to review, with the run id in the audit log."""

from __future__ import annotations

import dagster as dg

from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.operations.review_job import review, review_queue
from autonomath_pipelines.resources import AutonomathDatabase, LoopSettings
from autonomath_pipelines_tests.review.test_service import world  # noqa: F401 - the fixture


def _resources(world):
    db, repo = world
    return {"autonomath_db": AutonomathDatabase(path=str(db)), "loop_settings": LoopSettings(repo_root=str(repo))}


def _run(world, **config):
    return review.execute_in_process(
        run_config={"ops": {"review_action": {"config": config}}}, resources=_resources(world), raise_on_error=False
    )


def _audit(db):
    conn = sqlite3.connect(str(db))
    try:
        return conn.execute(
            "SELECT actor, action, candidate_id, to_status, dagster_run_id FROM review_audit_log"
        ).fetchall()
    finally:
        conn.close()


def test_the_job_approves_with_the_run_id_in_the_audit_log(world):
    result = _run(world, action="approve", actor="yamada", candidate_ids=["A:1"], execute=True)
    assert result.success
    assert _audit(world[0]) == [("yamada", "approve", "A:1", "approved", result.run_id)]
    output = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT)
    metadata = output.event_specific_data.metadata
    assert metadata["executed"].value is True and metadata["candidates"].value == 1
    assert "pending_review → approved" in metadata["outcome"].value


def test_the_job_is_a_dry_run_unless_told_to_execute(world):
    assert _run(world, action="approve", actor="yamada", candidate_ids=["A:1"]).success
    assert _audit(world[0]) == []


def test_a_refused_action_fails_the_run_with_the_reason(world):
    result = _run(world, action="promote", actor="yamada", candidate_ids=["A:1"], execute=True)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert "only a candidate that is approved can be promoted" in str(
        failure.step_failure_data.error.cause or failure.step_failure_data.error
    )


def test_the_queue_counts_candidates_by_loop_and_status(world):
    result = dg.materialize([review_queue], resources=_resources(world))
    metadata = result.asset_materializations_for_node("review_queue")[0].metadata
    assert metadata["dagster/row_count"].value == 9
    assert (
        metadata["A_pending_review"].value,
        metadata["E_pending_review"].value,
        metadata["G_pending_review"].value,
    ) == (3, 2, 1)
    assert "返済不要 1億円 補助金" in metadata["queue"].value
