"""Loop C — personalized cache: each loyal paid customer's own top-20 queries, answered in advance.

query_log (30 days, paid non-revoked keys) → personalized_cache_snapshot → personalized_cache_heads
(top-20 per customer with ≥ 50 requests, replay score vs a global top-20, what the service answered)
→ personalized_cache_candidates (payloads pre-executed through the search resource, one search per
distinct query per run, judged against the service's logged answers, 7-day TTL, blocking gates)
→ personalized_cache_published (upsert of the rows that answer as the service does into
``personalized_cache``, only when execution is enabled).
"""

import datetime as dt
import json

import dagster as dg
import pandas as pd

from autonomath_pipelines.catalog import loop_spec
from autonomath_pipelines.contract.timestamps import iso_utc, utc_now
from autonomath_pipelines.lib import badrows, gates
from autonomath_pipelines.lib.gates import Gate, GateResult
from autonomath_pipelines.lib.personal_head import (
    MIN_REQUESTS,
    TOP_K,
    baseline_cache,
    customer_heads,
    global_head,
    replay_hit_rate,
)
from autonomath_pipelines.lib.service_agreement import service_answers, with_service_answers
from autonomath_pipelines.lib.textnorm import MAX_QUERY_CHARS
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

SPEC = loop_spec("loop_c_personalized_cache")
#: The API serves at most this many personalized entries per customer (blocking gate).
MAX_ROWS_PER_CUSTOMER = TOP_K
#: The replay scores the cache against the week after the window (the period it will serve).
REPLAY_DAYS = 7
COMMON = asset_defaults(SPEC)

#: The columns loop C reads must be well-formed; other rows are skipped and counted (lib/badrows.py).
QUERY_RULES = badrows.TableRules(
    "query_log",
    "id",
    (
        badrows.timestamp("ts"),
        badrows.text("api_key"),
        badrows.text("query_text", max_chars=MAX_QUERY_CHARS),
        badrows.number("result_count", lo=0, integer=True),
        badrows.text("top1_program_id", nullable=True),
        badrows.number("confidence", lo=0, hi=1),
    ),
)
KEY_RULES = badrows.TableRules("api_keys", "rowid", (badrows.text("customer_id", required=True),))
#: The ``api_keys`` row is named by its rowid in reports: a key is a secret, never metadata.
PAID_REQUESTS_SQL = f"""
    SELECT q.id, q.ts, k.customer_id, q.query_text, q.result_count, q.top1_program_id, q.confidence,
           k.rowid AS api_key_rowid
    FROM query_log q JOIN api_keys k ON k.api_key = q.api_key
    WHERE q.ts >= ? AND q.ts < ? AND k.tier = 'paid' AND k.revoked_at IS NULL
      AND {QUERY_RULES.good("q")} AND {KEY_RULES.good("k")}
    ORDER BY q.id
"""
SNAPSHOT_COLUMNS = ["id", "ts", "customer_id", "query_text", "result_count", "top1_program_id", "confidence"]


def paid_requests(
    database: AutonomathDatabase, start_iso: str, end_iso: str, bad: badrows.BadRows | None = None
) -> tuple[pd.DataFrame, badrows.BadRows]:
    """Well-formed requests of paid, non-revoked keys in [start, end); rows whose text does not decode
    are left out and reported."""
    frame, bad = badrows.read_checked(
        database.read_only,
        PAID_REQUESTS_SQL,
        (start_iso, end_iso),
        table="query_log",
        key="id",
        sources={"customer_id": ("api_keys", "api_key_rowid")},
        bad=bad,
    )
    return frame[SNAPSHOT_COLUMNS], bad


def per_customer_cap(cap: int) -> Gate:
    def evaluate(frame: pd.DataFrame) -> GateResult:
        worst = int(frame.groupby("customer_id").size().max()) if len(frame) else 0
        over = int((frame.groupby("customer_id").size() > cap).sum()) if len(frame) else 0
        return GateResult(
            over == 0,
            f"{over} customers above {cap} rows (largest: {worst})",
            {"customers_over_cap": over, "max_rows_per_customer": worst, "cap": cap},
        )

    return Gate("rows_per_customer_within_cap", f"At most {cap} cached queries per customer.", evaluate)


def candidate_gates(paid_customers: frozenset, agreement_floor: float | None = None) -> tuple[Gate, ...]:
    return (
        per_customer_cap(MAX_ROWS_PER_CUSTOMER),
        gates.values_in(
            "customer_id",
            paid_customers,
            "only_paid_active_customers",
            "Every row belongs to a customer holding a paid, non-revoked key (api_keys read at run time).",
        ),
        gates.payloads_valid(),
        gates.ttl_in_future(lambda: iso_utc(utc_now())),
        gates.cache_keys_sound(scope=("customer_id",)),
        *(agreement_gates() if agreement_floor is None else agreement_gates(agreement_floor)),
    )


class HeadsConfig(dg.Config):
    top_k: int = TOP_K
    min_requests: int = MIN_REQUESTS


class PersonalCandidatesConfig(AgreementConfig):
    ttl_days: float = 7.0


def _paid_customers(database: AutonomathDatabase) -> frozenset:
    with database.read_only() as conn:
        return frozenset(
            c
            for (c,) in badrows.checked_rows(
                conn,
                "SELECT DISTINCT customer_id FROM api_keys WHERE tier = 'paid' AND revoked_at IS NULL "
                f"AND {KEY_RULES.good('api_keys')}",
                table="api_keys",
            )
        )


@dg.asset(name="personalized_cache_snapshot", deps=["query_log", "api_keys"], kinds={"sqlite", "parquet"}, **COMMON)
def personalized_cache_snapshot(
    context: dg.AssetExecutionContext, autonomath_db: AutonomathDatabase
) -> dg.MaterializeResult[pd.DataFrame]:
    """Requests of the 30-day window from paid, non-revoked keys, by customer (the key itself is not kept).
    Malformed rows (and keys whose customer id is not text) are skipped and counted."""
    autonomath_db.preflight(SPEC.reads, context=SPEC.loop_id)
    window = window_for(context, SPEC)
    snapshot, bad = paid_requests(autonomath_db, window.start_iso, window.end_iso)
    with autonomath_db.read_only() as conn:
        bad.extend(badrows.count_bad(conn, QUERY_RULES, "ts >= ? AND ts < ?", (window.start_iso, window.end_iso)))
        bad.extend(badrows.count_bad(conn, KEY_RULES, "tier = 'paid' AND revoked_at IS NULL"))
    return snapshot_result(
        context,
        snapshot,
        ["ts", "customer_id", "query_text"],
        bad,
        customers_seen=int(snapshot["customer_id"].nunique()) if len(snapshot) else 0,
        **window.metadata(),
    )


@dg.asset(name="personalized_cache_heads", deps=["query_log", "api_keys"], kinds={"pandas", "parquet"}, **COMMON)
def personalized_cache_heads(
    context: dg.AssetExecutionContext,
    config: HeadsConfig,
    autonomath_db: AutonomathDatabase,
    personalized_cache_snapshot: pd.DataFrame,
) -> dg.MaterializeResult[pd.DataFrame]:
    """Top-20 normalized queries of each customer with ≥ 50 requests in the window, with what the
    service answered each (over all paid requests of the window).

    Replay (when the week after the window is in the log): share of those customers' next-week
    requests the personal cache would serve, against a global top-20 cache.
    """
    if config.top_k > MAX_ROWS_PER_CUSTOMER:
        raise ValueError(f"top_k {config.top_k} exceeds the per-customer cap of {MAX_ROWS_PER_CUSTOMER}")
    window = window_for(context, SPEC)
    heads = customer_heads(
        personalized_cache_snapshot[["customer_id", "query_text"]], k=config.top_k, min_requests=config.min_requests
    )
    customers = sorted(heads["customer_id"].unique()) if len(heads) else []
    replay: dict = {"replay_computable": False}
    if customers:
        following, _ = paid_requests(
            autonomath_db, window.end_iso, iso_utc(window.end + dt.timedelta(days=REPLAY_DAYS))
        )
        cached = {c: list(g) for c, g in heads.groupby("customer_id")["query_text"]}
        personal = replay_hit_rate(cached, following, customers)
        baseline = replay_hit_rate(
            baseline_cache(customers, global_head(personalized_cache_snapshot, config.top_k)), following, customers
        )
        if personal.requests:
            replay = {
                "replay_computable": True,
                "replay_requests": personal.requests,
                "replay_customers": len(personal.per_customer),
                "replay_hit_rate": round(personal.micro, 6),
                "replay_hit_rate_macro": round(personal.macro, 6),
                "baseline_hit_rate": round(baseline.micro, 6),
                "baseline_hit_rate_macro": round(baseline.macro, 6),
            }
    covered = float(heads.groupby("customer_id")["share"].sum().mean()) if len(heads) else 0.0
    heads = with_service_answers(heads, service_answers(personalized_cache_snapshot))
    return dg.MaterializeResult(
        value=heads,
        metadata=frame_metadata(
            heads,
            ["customer_id", "rank", "query_text", "requests", "service_top1"],
            customers=len(customers),
            mean_head_coverage=round(covered, 6),
            **replay,
        ),
    )


@dg.asset(
    name="personalized_cache_candidates",
    kinds={"sqlite", "parquet"},
    check_specs=gate_specs("personalized_cache_candidates", candidate_gates(frozenset())),
    **COMMON,
)
def personalized_cache_candidates(
    context: dg.AssetExecutionContext,
    config: PersonalCandidatesConfig,
    autonomath_db: AutonomathDatabase,
    program_search: ProgramSearch,
    personalized_cache_heads: pd.DataFrame,
):
    # No return annotation: with check_specs the op has several outputs (see loop H).
    """Each customer's head queries pre-executed through the search resource, valid for 7 days, and
    judged against the service's logged answers (`cache_decision`, as in loop H): a query the service
    answered with nothing, or with a consistent top-1 the payload does not put first, is withheld.
    A query in several customers' heads is searched once per run.

    Blocking gates: ≤ 20 rows per customer, only paid non-revoked customers, payloads valid, TTL in
    the future, keys sound (unique per customer), no empty payload for a query the service answered,
    top-1 agreement with the service above the floor.
    """
    window = window_for(context, SPEC)
    computed_at = utc_now()
    heads = personalized_cache_heads
    payloads, search_meta, skipped = pre_execute(
        context,
        program_search,
        heads["query_text"] if len(heads) else [],
        service_popularity(autonomath_db, window.start_iso),
    )
    candidates = heads.assign(
        payload_json=[payloads[t] for t in heads["query_text"]],
        computed_at=iso_utc(computed_at),
        ttl_until=iso_utc(computed_at + dt.timedelta(days=config.ttl_days)),
        evidence_json=[
            evidence_json(
                rank=int(r.rank),
                requests=int(r.requests),
                customer_requests=int(r.customer_requests),
                share=round(float(r.share), 6),
                window_start_utc=window.start_iso,
                window_end_utc=window.end_iso,
            )
            for r in heads.itertuples()
        ],
        **provenance(context, SPEC, window),
    )
    candidates["result_count"] = [json.loads(p)["result_count"] for p in candidates["payload_json"]]
    candidates, agreement = judged(candidates)
    run_gates = candidate_gates(_paid_customers(autonomath_db), config.top1_agreement_floor)
    return dg.MaterializeResult(
        value=candidates,
        metadata=frame_metadata(
            candidates,
            ["customer_id", "rank", "query_text", "requests", "result_count", "cache_decision"],
            customers=int(candidates["customer_id"].nunique()) if len(candidates) else 0,
            head_queries=len(candidates),
            candidates_proposed=len(cacheable(candidates)),
            payloads_reused=len(candidates) - len(payloads),
            empty_result_payloads=int((candidates["result_count"] == 0).sum()) if len(candidates) else 0,
            **agreement,
            **search_meta,
            **bad_rows_metadata(skipped),
        ),
        check_results=gate_results("personalized_cache_candidates", run_gates, candidates),
    )


def personalized_cache_plan(
    context: dg.AssetExecutionContext, settings: LoopSettings, window: Window, candidates: pd.DataFrame
) -> PublishPlan:
    rows = cacheable(candidates)
    customers = sorted(rows["customer_id"].unique()) if len(rows) else []
    return PublishPlan(
        table="personalized_cache",
        rows=rows,
        key_columns=["customer_id", "query_hash"],
        stale_where="partition_key = ? OR (ttl_until <= ? AND customer_id IN (SELECT value FROM json_each(?)))",
        stale_params=(window.partition_key, iso_utc(utc_now()), json.dumps(customers)),
        preserve_columns=(),
        live_cache=True,
        metadata={"customers": len(customers)},
    )


personalized_cache_published = published_asset(
    SPEC,
    plan=personalized_cache_plan,
    description="`personalized_cache` rows of this partition that answer as the service does, 7-day TTL (dry run: "
    "nothing written).\n\nReplaces the partition's earlier rows and the expired rows of the customers written "
    "now; other customers' rows are never touched. A partition older than the one the cache serves, or than the "
    "last of its backfill range, or an empty set publishes nothing (``PublishPlan.live_cache``).",
)

LOOP = LoopDefinition.of(
    SPEC,
    personalized_cache_snapshot,
    personalized_cache_heads,
    personalized_cache_candidates,
    personalized_cache_published,
)
