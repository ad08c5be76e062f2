"""Loop H — cache warming (Zipf): yesterday's most requested queries, answered before they are asked.

query_log (one JST day) → cache_warming_snapshot → cache_warming_zipf_head (top 200 normalized
texts, fitted exponent, coverage, what the service answered each) → cache_warming_candidates
(payloads pre-executed through the search resource, judged against the service's logged answers,
24 h TTL, blocking gates) → query_cache_published (upsert of the rows that answer as the service
does into ``query_cache``, only when execution is enabled).
"""

import datetime as dt
import json

import dagster as dg
import pandas as pd

from autonomath_pipelines.catalog import loop_spec
from autonomath_pipelines.contract.timestamps import iso_utc, utc_now
from autonomath_pipelines.lib import badrows, gates
from autonomath_pipelines.lib.gates import Gate, GateResult
from autonomath_pipelines.lib.service_agreement import service_answers, with_service_answers
from autonomath_pipelines.lib.textnorm import MAX_QUERY_CHARS
from autonomath_pipelines.lib.zipf import zipf_head
from autonomath_pipelines.loops.cache_payloads import (
    AgreementConfig,
    agreement_gates,
    cacheable,
    judged,
    pre_execute,
    service_popularity,
)
from autonomath_pipelines.loops.common import (
    LoopDefinition,
    PublishPlan,
    Window,
    asset_defaults,
    bad_rows_metadata,
    evidence_json,
    frame_metadata,
    gate_results,
    gate_specs,
    provenance,
    published_asset,
    snapshot_result,
    window_for,
)
from autonomath_pipelines.resources import AutonomathDatabase, LoopSettings, ProgramSearch

SPEC = loop_spec("loop_h_cache_warming")
#: The API's cache holds at most this many warmed queries per day (blocking gate).
MAX_CACHE_ROWS = 200
COMMON = asset_defaults(SPEC)

CACHE_GATES = (
    gates.row_cap(MAX_CACHE_ROWS),
    gates.payloads_valid(),
    gates.ttl_in_future(lambda: iso_utc(utc_now())),
    gates.cache_keys_sound(),
)


#: The columns loop H reads must be well-formed; other rows are skipped and counted (lib/badrows.py).
QUERY_RULES = badrows.TableRules(
    "query_log",
    "id",
    (
        badrows.timestamp("ts"),
        badrows.text("query_text", max_chars=MAX_QUERY_CHARS),
        badrows.number("result_count", lo=0, integer=True),
        badrows.text("tier"),
        badrows.text("top1_program_id", nullable=True),
        badrows.number("confidence", lo=0, hi=1),
    ),
)


class ZipfHeadConfig(dg.Config):
    head_size: int = MAX_CACHE_ROWS


class CacheCandidatesConfig(AgreementConfig):
    ttl_hours: float = 24.0


@dg.asset(name="cache_warming_snapshot", deps=["query_log"], kinds={"sqlite", "parquet"}, **COMMON)
def cache_warming_snapshot(
    context: dg.AssetExecutionContext, autonomath_db: AutonomathDatabase
) -> dg.MaterializeResult[pd.DataFrame]:
    """The queries the API served during the partition's JST day (rows of `query_log`); malformed rows
    (timestamp not contract text, query not text or over-long) are skipped and counted."""
    autonomath_db.preflight(SPEC.reads, context=SPEC.loop_id)
    window = window_for(context, SPEC)
    snapshot, bad = badrows.read_checked(
        autonomath_db.read_only,
        "SELECT id, ts, query_text, result_count, top1_program_id, confidence, tier FROM query_log WHERE ts >= ? "
        "AND ts < ? "
        f"AND {QUERY_RULES.good('query_log')} ORDER BY id",
        (window.start_iso, window.end_iso),
        table="query_log",
        key="id",
    )
    with autonomath_db.read_only() as conn:
        bad.extend(badrows.count_bad(conn, QUERY_RULES, "ts >= ? AND ts < ?", (window.start_iso, window.end_iso)))
    return snapshot_result(context, snapshot, ["ts", "query_text", "result_count", "tier"], bad, **window.metadata())


@dg.asset(name="cache_warming_zipf_head", kinds={"pandas", "parquet"}, **COMMON)
def cache_warming_zipf_head(
    config: ZipfHeadConfig, cache_warming_snapshot: pd.DataFrame
) -> dg.MaterializeResult[pd.DataFrame]:
    """The Zipf head of the day: the most requested normalized queries, with their share of traffic and
    what the service answered them (answered or not, the top-1 it gave most often, that top-1's share)."""
    head = zipf_head(cache_warming_snapshot["query_text"], k=config.head_size)
    summary = head.summary()
    frame = with_service_answers(head.head, service_answers(cache_warming_snapshot))
    return dg.MaterializeResult(
        value=frame,
        metadata=frame_metadata(
            frame,
            ["rank", "query_text", "requests", "service_top1", "cumulative_share"],
            requests=summary["requests"],
            unique_queries=summary["unique_queries"],
            zipf_exponent=summary["zipf_exponent"],
            head_coverage=summary["head_coverage"],
        ),
    )


@dg.asset(
    name="cache_warming_candidates",
    kinds={"sqlite", "parquet"},
    check_specs=gate_specs("cache_warming_candidates", (*CACHE_GATES, *agreement_gates())),
    **COMMON,
)
def cache_warming_candidates(
    context: dg.AssetExecutionContext,
    config: CacheCandidatesConfig,
    autonomath_db: AutonomathDatabase,
    program_search: ProgramSearch,
    cache_warming_zipf_head: pd.DataFrame,
):
    # No return annotation: with check_specs the op has several outputs and Dagster would type the
    # value output as Nothing.
    """Each head query pre-executed through the search resource, valid for 24 h, and judged against
    the service's logged answer (`cache_decision`): a query the service answered with nothing, or
    with a consistent top-1 the payload does not put first, is withheld from the cache.

    Blocking gates: at most 200 rows, payloads valid, TTL in the future, keys sound (no empty query),
    no empty payload for a query the service answered, top-1 agreement with the service above the floor.
    """
    window = window_for(context, SPEC)
    computed_at = utc_now()
    head = cache_warming_zipf_head
    payloads, search_meta, skipped = pre_execute(
        context, program_search, head["query_text"], service_popularity(autonomath_db, window.start_iso)
    )
    candidates = head.assign(
        payload_json=[payloads[t] for t in head["query_text"]],
        result_count=[json.loads(payloads[t])["result_count"] for t in head["query_text"]],
        computed_at=iso_utc(computed_at),
        ttl_until=iso_utc(computed_at + dt.timedelta(hours=config.ttl_hours)),
        evidence_json=[
            evidence_json(rank=int(r.rank), requests=int(r.requests), share=round(float(r.share), 6))
            for r in head.itertuples()
        ],
        **provenance(context, SPEC, window),
    )
    candidates, agreement = judged(candidates)
    run_gates = (*CACHE_GATES, *agreement_gates(config.top1_agreement_floor))
    return dg.MaterializeResult(
        value=candidates,
        metadata=frame_metadata(
            candidates,
            ["rank", "query_text", "requests", "result_count", "cached_top1", "service_top1", "cache_decision"],
            head_queries=len(candidates),
            candidates_proposed=len(cacheable(candidates)),
            empty_result_payloads=int((candidates["result_count"] == 0).sum()) if len(candidates) else 0,
            **agreement,
            **search_meta,
            **bad_rows_metadata(skipped),
        ),
        check_results=gate_results("cache_warming_candidates", run_gates, candidates),
    )


def _serves_head(database: AutonomathDatabase, candidates: pd.DataFrame) -> GateResult:
    now = iso_utc(utc_now())
    with database.read_only() as conn:
        live = {h for (h,) in conn.execute("SELECT query_hash FROM query_cache WHERE ttl_until > ?", (now,))}
    missing = [h for h in candidates["query_hash"] if h not in live]
    return GateResult(
        not missing,
        f"{len(missing)} of {len(candidates)} cached head queries not served from query_cache",
        {"missing": len(missing), "head": len(candidates)},
    )


SERVES_HEAD = Gate(
    "query_cache_serves_head",
    "After an executed publish, query_cache serves every cached head query with a live TTL.",
    lambda _: None,
)


def query_cache_plan(
    context: dg.AssetExecutionContext, settings: LoopSettings, window: Window, candidates: pd.DataFrame
) -> PublishPlan:
    return PublishPlan(
        table="query_cache",
        rows=cacheable(candidates),
        key_columns=["query_hash"],
        stale_where="partition_key = ? OR ttl_until <= ?",
        stale_params=(window.partition_key, iso_utc(utc_now())),
        live_cache=True,
    )


def query_cache_served(
    database: AutonomathDatabase, plan: PublishPlan, published: dict, inputs: dict
) -> list[GateResult]:
    if not published["published"]:
        return [GateResult(True, "nothing was written", {"dry_run": published["dry_run"]})]
    return [_serves_head(database, plan.rows)]


query_cache_published = published_asset(
    SPEC,
    plan=query_cache_plan,
    checks=(SERVES_HEAD,),
    verify=query_cache_served,
    description="`query_cache` rows of this partition: the day's head queries that answer as the service does, "
    "upserted with a 24 h TTL (dry run: nothing written).\n\nReplaces the partition's earlier rows and every "
    "expired row, so re-running a day never duplicates. A partition older than the one the cache serves, or than "
    "the last of its backfill range, or an empty head publishes nothing (``PublishPlan.live_cache``); nor does an "
    "empty or abnormally small day of query_log (the window gate).",
)

LOOP = LoopDefinition.of(
    SPEC, cache_warming_snapshot, cache_warming_zipf_head, cache_warming_candidates, query_cache_published
)
