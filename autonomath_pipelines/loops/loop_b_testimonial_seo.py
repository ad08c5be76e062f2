"""Loop B — testimonial → SEO/GEO: consented success reports become case pages, never one customer's.

customer_success_events (partition month, consent_flag = 1 only) + programs + prefectures →
testimonial_seo_snapshot (program × prefecture aggregates, computed in SQL with HAVING count ≥ k)
→ testimonial_seo_candidates (Jinja Markdown page ``site/blog/case-<program>-<prefecture>.md`` with an
embedded schema.org JSON-LD block; blocking gates) → seo_testimonial_candidates_published.

Privacy: a group is published only when at least ``min_group_size`` (k, default 3) consented events
fall in it, and its rating only when at least k of them carry a rating. Adopted amounts (sum, mean)
appear only when at least k adopted events report one. Customers' free-text comments are left out
entirely (no quoting, no rewriting): the page holds only the service's own facts and counts, so no
api_key or comment can reach the output. The evidence records how many consented comments exist.

Page text: every value interpolated into the Markdown body is backslash-escaped (lib/markdown_safety.py),
and a blocking gate re-renders each page with markdown-it-py: a page holding an image, link, autolink or
raw HTML beyond the template's own is refused. A group whose page path review could never promote (a
program id with ``/`` or ``..``) is not proposed.
"""

import dagster as dg
import pandas as pd
from pydantic import Field

from autonomath_pipelines.catalog import loop_spec
from autonomath_pipelines.contract.timestamps import iso_utc, utc_now
from autonomath_pipelines.lib import badrows
from autonomath_pipelines.lib.case_pages import candidate_gates, page_candidate, page_path, promotable
from autonomath_pipelines.loops.common import (
    LoopDefinition,
    Window,
    asset_defaults,
    frame_metadata,
    gate_results,
    gate_specs,
    provenance,
    published_asset,
    review_queue,
    snapshot_result,
    window_for,
)
from autonomath_pipelines.resources import AutonomathDatabase

SPEC = loop_spec("loop_b_testimonial_seo")
COMMON = asset_defaults(SPEC)
DEFAULT_MIN_GROUP_SIZE = 3
#: Where review promotes an approved page: the service's blog.
PAGE_DIR = SPEC.promotes_to

#: The columns loop B reads must be well-formed; other events are skipped and counted (lib/badrows.py).
#: Amounts are integers in [0, 10^12] (a corrupt huge amount would overflow SQLite's SUM()).
EVENT_RULES = badrows.TableRules(
    "customer_success_events",
    "id",
    (
        badrows.timestamp("ts"),
        badrows.text("api_key"),
        badrows.text("program_id"),
        badrows.text("prefecture_code"),
        badrows.reference("program_id", "programs", "program_id"),
        badrows.reference("prefecture_code", "prefectures", "prefecture_code"),
        badrows.number("amount_jpy", lo=0, hi=badrows.MAX_AMOUNT_JPY, integer=True, nullable=True),
        badrows.number("rating", lo=1, hi=5, nullable=True),
    ),
)
#: Well-formed events of the window (every read of the events in this loop uses it, so the
#: consented-events gate re-counts exactly what the aggregate counted).
GOOD_EVENT = EVENT_RULES.good("customer_success_events")

#: One row per program × prefecture with ≥ k consented events (and ≥ k ratings) in [start, end).
#: Amount statistics only over ≥ k adopted events with an amount; otherwise NULL.
CONSENTED_GROUPS_SQL = (
    """
WITH consented AS (
    SELECT program_id, prefecture_code, outcome, amount_jpy, rating, comment
    FROM customer_success_events
    WHERE consent_flag = 1 AND ts >= :start AND ts < :end AND """
    + GOOD_EVENT
    + """
), grouped AS (
    SELECT program_id, prefecture_code,
           COUNT(*) AS group_size,
           SUM(outcome = 'adopted') AS adopted_count,
           SUM(outcome = 'applied') AS applied_count,
           SUM(outcome = 'not_adopted') AS not_adopted_count,
           SUM(outcome = 'adopted' AND amount_jpy IS NOT NULL) AS amount_count,
           SUM(CASE WHEN outcome = 'adopted' THEN amount_jpy END) AS amount_sum,
           AVG(CASE WHEN outcome = 'adopted' THEN amount_jpy END) AS amount_avg,
           MIN(CASE WHEN outcome = 'adopted' THEN amount_jpy END) AS amount_min,
           MAX(CASE WHEN outcome = 'adopted' THEN amount_jpy END) AS amount_max,
           COUNT(rating) AS rating_count,
           AVG(rating) AS rating_mean,
           COUNT(comment) AS consented_comments
    FROM consented
    GROUP BY program_id, prefecture_code
    HAVING COUNT(*) >= :k AND COUNT(rating) >= :k
)
SELECT g.program_id, g.prefecture_code, p.name AS program_name, p.agency, p.category,
       f.name_ja AS prefecture_name,
       g.group_size, g.adopted_count, g.applied_count, g.not_adopted_count,
       CASE WHEN g.adopted_count + g.not_adopted_count > 0
            THEN 1.0 * g.adopted_count / (g.adopted_count + g.not_adopted_count) END AS adoption_rate,
       g.amount_count,
       CASE WHEN g.amount_count >= :k THEN g.amount_sum END AS adopted_amount_total_jpy,
       CASE WHEN g.amount_count >= :k THEN CAST(ROUND(g.amount_avg) AS INTEGER) END AS adopted_amount_mean_jpy,
       CASE WHEN g.amount_count >= :k THEN g.amount_min END AS adopted_amount_min_jpy,
       CASE WHEN g.amount_count >= :k THEN g.amount_max END AS adopted_amount_max_jpy,
       g.rating_count, ROUND(g.rating_mean, 2) AS rating_value, g.consented_comments
FROM grouped g
JOIN programs p ON p.program_id = g.program_id
JOIN prefectures f ON f.prefecture_code = g.prefecture_code
ORDER BY g.program_id, g.prefecture_code
"""
)

SNAPSHOT_COLUMNS = [
    "program_id",
    "prefecture_code",
    "program_name",
    "agency",
    "category",
    "prefecture_name",
    "group_size",
    "adopted_count",
    "applied_count",
    "not_adopted_count",
    "adoption_rate",
    "amount_count",
    "adopted_amount_total_jpy",
    "adopted_amount_mean_jpy",
    "adopted_amount_min_jpy",
    "adopted_amount_max_jpy",
    "rating_count",
    "rating_value",
    "consented_comments",
]


#: Columns of the aggregate read from programs / prefectures: a value there that does not decode is
#: reported against that table's row, and its group is skipped.
JOINED_SOURCES = {
    "program_name": ("programs", "program_id"),
    "agency": ("programs", "program_id"),
    "category": ("programs", "program_id"),
    "prefecture_name": ("prefectures", "prefecture_code"),
}


def consented_groups(conn, start_iso: str, end_iso: str, k: int, bad: badrows.BadRows | None = None) -> pd.DataFrame:
    """The consented program × prefecture aggregates of ``[start, end)`` with at least ``k`` well-formed
    members. A group whose program or prefecture text does not decode is left out (and reported in ``bad``)."""
    if k < 2:
        raise ValueError(f"min_group_size must be >= 2 (a group of one identifies its customer), got {k}")
    groups, _ = badrows.frame_checked(
        conn,
        CONSENTED_GROUPS_SQL,
        {"start": start_iso, "end": end_iso, "k": int(k)},
        table="customer_success_events",
        key="program_id",
        sources=JOINED_SOURCES,
        bad=bad,
    )
    return groups


class SnapshotConfig(dg.Config):
    min_group_size: int = Field(
        default=DEFAULT_MIN_GROUP_SIZE,
        description="k: a program × prefecture group is "
        "published only with at least this many consented events (and ratings).",
    )


# ---------------------------------------------------------------------------------------- assets


@dg.asset(
    name="testimonial_seo_snapshot",
    deps=["customer_success_events", "programs", "prefectures"],
    kinds={"sqlite", "parquet"},
    **COMMON,
)
def testimonial_seo_snapshot(
    context: dg.AssetExecutionContext, config: SnapshotConfig, autonomath_db: AutonomathDatabase
) -> dg.MaterializeResult[pd.DataFrame]:
    """Consented success events of the month aggregated by program × prefecture in SQL; groups below k
    never leave the database. Non-consented events are only counted (metadata)."""
    autonomath_db.preflight(SPEC.reads, context=SPEC.loop_id)
    window = window_for(context, SPEC)
    k = config.min_group_size
    bad = badrows.BadRows()
    with autonomath_db.read_only() as conn:
        snapshot = consented_groups(conn, window.start_iso, window.end_iso, k, bad)
        consented, not_consented, consented_group_count = conn.execute(
            "SELECT COALESCE(SUM(consent_flag = 1), 0), COALESCE(SUM(consent_flag = 0), 0), "
            "COUNT(DISTINCT CASE WHEN consent_flag = 1 THEN program_id || '|' || prefecture_code END) "
            f"FROM customer_success_events WHERE ts >= ? AND ts < ? AND {GOOD_EVENT}",
            (window.start_iso, window.end_iso),
        ).fetchone()
        bad.extend(badrows.count_bad(conn, EVENT_RULES, "ts >= ? AND ts < ?", (window.start_iso, window.end_iso)))
    snapshot = snapshot.assign(min_group_size=k)
    return snapshot_result(
        context,
        snapshot,
        ["program_id", "prefecture_code", "group_size", "adopted_count", "rating_value"],
        bad,
        **window.metadata(),
        min_group_size=k,
        consented_events=int(consented),
        non_consented_events=int(not_consented),
        consented_groups=int(consented_group_count),
        groups_suppressed_below_k=int(consented_group_count) - len(snapshot),
        events_published=int(snapshot["group_size"].sum()) if len(snapshot) else 0,
    )


def _run_reference(database: AutonomathDatabase, window: Window) -> tuple[dict[tuple[str, str], int], frozenset[str]]:
    """Consented events per group, and every api_key in the window, counted afresh from the database."""
    params = (window.start_iso, window.end_iso)
    with badrows.checked_connection(database.read_only) as conn:
        # The same well-formedness rules as the aggregate: the gate compares like with like. Keys
        # that do not decode cannot reach an output (every output text is valid UTF-8).
        counts = {
            (p, f): int(n)
            for p, f, n in badrows.checked_rows(
                conn,
                "SELECT program_id, prefecture_code, COUNT(*) FROM customer_success_events "
                f"WHERE consent_flag = 1 AND ts >= ? AND ts < ? AND {GOOD_EVENT} GROUP BY program_id, prefecture_code",
                params,
                table="customer_success_events",
            )
        }
        keys = frozenset(
            k
            for (k,) in badrows.checked_rows(
                conn,
                "SELECT DISTINCT api_key FROM customer_success_events WHERE ts >= ? AND ts < ?",
                params,
                table="customer_success_events",
            )
            if k
        )
    return counts, keys


CANDIDATE_COLUMNS = [
    "program_id",
    "prefecture_code",
    "page_path",
    "markdown",
    "jsonld",
    "group_size",
    "evidence_json",
    "status",
    "created_at",
    "min_group_size",
    "rating_count",
    "program_name",
]


@dg.asset(
    name="testimonial_seo_candidates",
    kinds={"jinja", "parquet"},
    check_specs=gate_specs("testimonial_seo_candidates", candidate_gates({}, frozenset())),
    **COMMON,
)
def testimonial_seo_candidates(
    context: dg.AssetExecutionContext, autonomath_db: AutonomathDatabase, testimonial_seo_snapshot: pd.DataFrame
):
    # No return annotation: with check_specs the op has several outputs.
    """One case page per group: Jinja Markdown (front matter + facts table) with an embedded schema.org
    JSON-LD block. Blocking gates: consented events only, no group below k, JSON-LD valid, Markdown renders,
    no image/link/HTML beyond the template's own, no customer identifier in the output. A group whose page
    path review could never promote is not proposed (counted in ``pages_skipped_unpromotable``)."""
    window = window_for(context, SPEC)
    created_at = iso_utc(utc_now())
    rows, unpromotable = [], []
    for group in testimonial_seo_snapshot.to_dict("records"):
        if not promotable(PAGE_DIR, group["program_id"], group["prefecture_code"]):
            unpromotable.append(page_path(PAGE_DIR, group["program_id"], group["prefecture_code"]))
            continue
        rows.append({**page_candidate(group, window=window, page_dir=PAGE_DIR), "created_at": created_at})
    if unpromotable:
        context.log.warning(
            f"{len(unpromotable)} pages not proposed: their paths are not plain file names in "
            f"{PAGE_DIR}/ and review could never promote them: {unpromotable[:5]}"
        )
    candidates = pd.DataFrame(rows, columns=CANDIDATE_COLUMNS).assign(**provenance(context, SPEC, window))
    counts, api_keys = _run_reference(autonomath_db, window)
    run_gates = candidate_gates(counts, api_keys)
    return dg.MaterializeResult(
        value=candidates,
        metadata=frame_metadata(
            candidates,
            ["page_path", "program_name", "group_size", "rating_count"],
            candidates_proposed=len(candidates),
            pages_skipped_unpromotable=len(unpromotable),
            events_covered=int(candidates["group_size"].sum()) if len(candidates) else 0,
        ),
        check_results=gate_results("testimonial_seo_candidates", run_gates, candidates),
    )


seo_testimonial_candidates_published = published_asset(
    SPEC,
    plan=review_queue(SPEC, ["partition_key", "program_id", "prefecture_code"]),
    window_gated=False,
    description="`seo_testimonial_candidates` rows of this month, pending operator review (dry run: nothing "
    "written).\n\nRe-running replaces the month's still-pending pages; reviewed pages keep their status.",
)

LOOP = LoopDefinition.of(
    SPEC, testimonial_seo_snapshot, testimonial_seo_candidates, seo_testimonial_candidates_published
)
