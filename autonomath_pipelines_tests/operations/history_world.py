"""Tiny stand-ins for loop jobs (real loop ids and candidates asset keys, a step that succeeds or
raises) and small hand-made AutonoMath databases, for the digest, scorecard and failure-sensor tests."""

import json
from pathlib import Path

import dagster as dg

from autonomath_pipelines.catalog import TIMEZONE
from autonomath_pipelines.contract.schema import create_all
from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.lib.textnorm import normalize_query, query_hash
from autonomath_pipelines.loops import LOOP_DEFINITIONS

LOOP_A, LOOP_B, LOOP_C = LOOP_DEFINITIONS[:3]
TINY_WEEKS = dg.WeeklyPartitionsDefinition(start_date="2026-01-04", timezone=TIMEZONE)


class Outcome(dg.Config):
    rows: int = 0
    fail: bool = False


def _candidates_asset(loop) -> dg.AssetsDefinition:
    @dg.asset(key=loop.candidates, partitions_def=TINY_WEEKS, group_name=loop.spec.group_name)
    def candidates(config: Outcome) -> dg.MaterializeResult:
        if config.fail:
            raise RuntimeError(f"loop {loop.spec.letter}: source table is empty")
        return dg.MaterializeResult(metadata={"dagster/row_count": config.rows})

    return candidates


_ASSETS = {loop.spec.loop_id: _candidates_asset(loop) for loop in (LOOP_A, LOOP_B, LOOP_C)}
#: Jobs named and tagged like the real loop jobs (LoopDefinition.job), over one tiny asset each.
TINY_DEFS = dg.Definitions(
    assets=list(_ASSETS.values()),
    jobs=[
        dg.define_asset_job(
            loop.spec.job_name, selection=[_ASSETS[loop.spec.loop_id]], tags={"loop_id": loop.spec.loop_id}
        )
        for loop in (LOOP_A, LOOP_B, LOOP_C)
    ],
)


def run_tiny_loop(
    instance: dg.DagsterInstance, loop, partition: str, *, rows: int = 0, fail: bool = False
) -> dg.ExecuteInProcessResult:
    job = TINY_DEFS.resolve_job_def(loop.spec.job_name)
    return job.execute_in_process(
        partition_key=partition,
        instance=instance,
        raise_on_error=False,
        run_config={"ops": {loop.candidates.path[-1]: {"config": {"rows": rows, "fail": fail}}}},
    )


def make_db(path: Path, *, audit=(), promotions=(), queries=(), feedback=(), cache=()) -> Path:
    """A database with the full schema and the given rows.

    audit: (ts, action, loop_id, candidate_id, proposed_at, promotion_id); promotions: (promotion_id,
    promoted_at, loop_id, state, patterns); queries: (ts, query_text); feedback: (ts, query_text,
    wrong_answer); cache: (partition_key, query_text).
    """
    conn = sqlite3.connect(str(path))
    create_all(conn)
    conn.executemany(
        "INSERT INTO review_audit_log (ts, actor, action, loop_id, candidate_id, from_status, to_status, "
        "proposed_at, promotion_id) VALUES (?, 'op', ?, ?, ?, NULL, NULL, ?, ?)",
        list(audit),
    )
    conn.executemany(
        "INSERT INTO review_promotions (promotion_id, promoted_at, actor, loop_id, target, candidate_refs, "
        "before_json, after_json, state) VALUES (?, ?, 'op', ?, 'table:hallucination_guard', '[]', '{}', ?, ?)",
        [
            (
                pid,
                at,
                loop_id,
                json.dumps(
                    {
                        "table": "hallucination_guard",
                        "key": ["id"],
                        "rows": [{"id": i, "pattern": p} for i, p in enumerate(patterns)],
                    }
                ),
                state,
            )
            for pid, at, loop_id, state, patterns in promotions
        ],
    )
    conn.executemany(
        "INSERT INTO query_log (ts, api_key, session_id, query_text, top1_program_id, confidence, result_count, "
        "latency_ms, tier) VALUES (?, 'k', 's', ?, NULL, 0.5, 1, 10.0, 'paid')",
        list(queries),
    )
    conn.executemany(
        "INSERT INTO customer_feedback (ts, api_key, query_text, wrong_answer) VALUES (?, 'k', ?, ?)", list(feedback)
    )
    conn.executemany(
        "INSERT INTO query_cache VALUES (?, ?, '{}', 'x', 'x', '{}', 'loop_h_cache_warming', 'r', ?, 'v')",
        [(query_hash(normalize_query(text)), normalize_query(text), day) for day, text in cache],
    )
    conn.commit()
    conn.close()
    return path
