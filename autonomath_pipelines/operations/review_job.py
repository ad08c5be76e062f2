"""Review from the Dagster UI: the review queue asset and a review job the Launchpad runs with config.

Both go through ``ReviewService``, like ``autonomath-loops review``: the same transitions, refusals,
audit rows (with this run's id) and dry run by default.
"""

from typing import Literal

import dagster as dg
from pydantic import Field

from autonomath_pipelines.lib.review_rules import STATUSES
from autonomath_pipelines.loops.common import OWNERS
from autonomath_pipelines.resources import AutonomathDatabase, LoopSettings
from autonomath_pipelines.review import REVIEWABLES, ReviewError, ReviewService, render

GROUP = "operations"
QUEUE_PREVIEW = 15


@dg.asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"sqlite", "yaml"},
    deps=[
        "hallucination_guard_candidates_published",
        "seo_testimonial_candidates_published",
        "alias_candidates_published",
        "property_stubs_published",
        "gold_candidates_published",
    ],
)
def review_queue(
    context: dg.AssetExecutionContext, autonomath_db: AutonomathDatabase, loop_settings: LoopSettings
) -> dg.MaterializeResult:
    """Candidates waiting for the operator, per reviewable loop (A, B, E, G, J), and counts by status.

    Materialize it to see what to review; act with the `review` job or `autonomath-loops review`."""
    service = ReviewService(autonomath_db, loop_settings.repo_path(), actor="review_queue")
    candidates = service.list()
    metadata: dict = {"dagster/row_count": sum(c.status == "pending_review" for c in candidates)}
    sections = []
    for letter, loop in REVIEWABLES.items():
        own = [c for c in candidates if c.loop_id == loop.spec.loop_id]
        for status in STATUSES:
            metadata[f"{letter}_{status}"] = sum(c.status == status for c in own)
        pending = [c for c in own if c.status == "pending_review"]
        sections.append(
            f"### {letter} — {loop.spec.title} → {loop.target} ({len(pending)} pending)\n\n"
            + render.markdown(render.candidate_lines(pending[:QUEUE_PREVIEW]))
        )
    metadata["queue"] = dg.MetadataValue.md("\n\n".join(sections))
    context.log.info(f"{metadata['dagster/row_count']} candidates pending review")
    return dg.MaterializeResult(metadata=metadata)


class ReviewActionConfig(dg.Config):
    """One review action. ``execute`` false (the default) shows what would change and changes nothing."""

    action: Literal["list", "approve", "reject", "promote", "rollback"] = Field(
        description="list | approve | reject | promote | rollback"
    )
    actor: str = Field(description="Who acts: recorded in the audit log with this run's id.")
    candidate_ids: list[str] = Field(default_factory=list, description="Candidate ids, e.g. ['A:12', 'E:3'].")
    loop: str | None = Field(
        default=None,
        description="Loop letter or id: with no ids, every pending "
        "(approve/reject) or approved (promote) candidate of the loop matching the filters.",
    )
    partition: str | None = Field(default=None, description="Filter: only this partition key.")
    min_score: float | None = Field(default=None, description="Filter: only candidates scoring at least this.")
    limit: int | None = Field(default=None, description="Filter: at most this many.")
    reason: str | None = Field(default=None, description="Why (required to reject).")
    promotion_id: int | None = Field(default=None, description="The promotion to roll back.")
    execute: bool = Field(default=False, description="Apply the change; false = dry run.")


@dg.op(out=dg.Out(dg.Nothing), tags={"kind": "review"})
def review_action(
    context: dg.OpExecutionContext,
    config: ReviewActionConfig,
    autonomath_db: AutonomathDatabase,
    loop_settings: LoopSettings,
):
    """Carry out one review action; its outcome is the output's Markdown metadata. A refusal fails the run
    with the reason and changes nothing."""
    if not config.actor.strip():
        raise ReviewError("actor must name who acts")
    service = ReviewService(
        autonomath_db, loop_settings.repo_path(), actor=config.actor.strip(), dagster_run_id=context.run_id
    )
    if config.action == "list":
        candidates = service.list(config.loop, partition=config.partition, limit=config.limit)
        yield dg.Output(
            None,
            metadata={
                "candidates": len(candidates),
                "listing": dg.MetadataValue.md(render.markdown(render.candidate_lines(candidates))),
            },
        )
        return
    if config.action in ("approve", "reject"):
        outcome = service.decide(
            config.action,
            config.candidate_ids,
            loop=config.loop,
            partition=config.partition,
            min_score=config.min_score,
            limit=config.limit,
            reason=config.reason,
            execute=config.execute,
        )
    elif config.action == "promote":
        outcome = service.promote(config.candidate_ids, loop=config.loop, execute=config.execute)
    else:
        if config.promotion_id is None:
            raise ReviewError("rollback needs promotion_id")
        outcome = service.rollback(config.promotion_id, execute=config.execute)
    lines = render.outcome_lines(outcome)
    context.log.info("\n".join(lines))
    yield dg.Output(
        None,
        metadata={
            "executed": outcome.executed,
            "candidates": len(outcome.transitions),
            **({"promotion_id": outcome.promotion_id} if outcome.promotion_id is not None else {}),
            "outcome": dg.MetadataValue.md(render.markdown(lines)),
        },
    )


@dg.job(tags={"autonomath/review": "true"})
def review():
    """Review candidates from the UI (Launchpad config: action, actor, ids or loop + filters, execute)."""
    review_action()
