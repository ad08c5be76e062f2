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

import datetime as dt
import functools
from collections import Counter
from zoneinfo import ZoneInfo

import dagster as dg
import jinja2
import pandas as pd
import yaml
from pydantic import Field

from autonomath_pipelines import CODE_VERSION
from autonomath_pipelines.catalog import TIMEZONE, loop_spec
from autonomath_pipelines.lib import badrows, gates
from autonomath_pipelines.lib.files import is_safe_file_name
from autonomath_pipelines.lib.gates import Gate, GateResult
from autonomath_pipelines.lib.jsonld import BEST_RATING, WORST_RATING, build_jsonld, dumps_jsonld, jsonld_problems
from autonomath_pipelines.lib.markdown_safety import (
    describe_markup, escape_inline, injected_markup, markup_counts, split_front_matter,
)
from autonomath_pipelines.loops.common import DB_WRITE_POOL, OWNERS, LoopDefinition, PublishPlan, Window, bad_rows_metadata, evidence_json, frame_metadata, gate_results, gate_specs, log_bad_rows, partitions_for, provenance, publish, window_for
from autonomath_pipelines.contract.timestamps import iso_utc, utc_now
from autonomath_pipelines.resources import AutonomathDatabase, LoopSettings

SPEC = loop_spec("loop_b_testimonial_seo")
PARTITIONS = partitions_for(SPEC)
COMMON = dict(group_name=SPEC.group_name, owners=OWNERS, partitions_def=PARTITIONS, code_version=CODE_VERSION)
DEFAULT_MIN_GROUP_SIZE = 3
TEMPLATE = "case_study.md.j2"
PAGE_DIR = "site/blog"

#: The columns loop B reads must be well-formed; other events are skipped and counted (lib/badrows.py).
#: Amounts are integers in [0, 10^12] (a corrupt huge amount would overflow SQLite's SUM()).
EVENT_RULES = badrows.TableRules("customer_success_events", "id", (
    badrows.timestamp("ts"), badrows.text("api_key"), badrows.text("program_id"), badrows.text("prefecture_code"),
    badrows.reference("program_id", "programs", "program_id"),
    badrows.reference("prefecture_code", "prefectures", "prefecture_code"),
    badrows.number("amount_jpy", lo=0, hi=badrows.MAX_AMOUNT_JPY, integer=True, nullable=True),
    badrows.number("rating", lo=1, hi=5, nullable=True)))
#: Well-formed events of the window (every read of the events in this loop uses it, so the
#: consented-events gate re-counts exactly what the aggregate counted).
GOOD_EVENT = EVENT_RULES.good("customer_success_events")

#: One row per program × prefecture with ≥ k consented events (and ≥ k ratings) in [start, end).
#: Amount statistics only over ≥ k adopted events with an amount; otherwise NULL.
CONSENTED_GROUPS_SQL = """
WITH consented AS (
    SELECT program_id, prefecture_code, outcome, amount_jpy, rating, comment
    FROM customer_success_events
    WHERE consent_flag = 1 AND ts >= :start AND ts < :end AND """ + GOOD_EVENT + """
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

SNAPSHOT_COLUMNS = ["program_id", "prefecture_code", "program_name", "agency", "category", "prefecture_name",
                    "group_size", "adopted_count", "applied_count", "not_adopted_count", "adoption_rate",
                    "amount_count", "adopted_amount_total_jpy", "adopted_amount_mean_jpy", "adopted_amount_min_jpy",
                    "adopted_amount_max_jpy", "rating_count", "rating_value", "consented_comments"]


#: Columns of the aggregate read from programs / prefectures: a value there that does not decode is
#: reported against that table's row, and its group is skipped.
JOINED_SOURCES = {"program_name": ("programs", "program_id"), "agency": ("programs", "program_id"),
                  "category": ("programs", "program_id"), "prefecture_name": ("prefectures", "prefecture_code")}


def consented_groups(conn, start_iso: str, end_iso: str, k: int,
                     bad: badrows.BadRows | None = None) -> pd.DataFrame:
    """The consented program × prefecture aggregates of ``[start, end)`` with at least ``k`` well-formed
    members. A group whose program or prefecture text does not decode is left out (and reported in ``bad``)."""
    if k < 2:
        raise ValueError(f"min_group_size must be >= 2 (a group of one identifies its customer), got {k}")
    groups, _ = badrows.frame_checked(conn, CONSENTED_GROUPS_SQL, {"start": start_iso, "end": end_iso, "k": int(k)},
                                      table="customer_success_events", key="program_id", sources=JOINED_SOURCES,
                                      bad=bad)
    return groups


class SnapshotConfig(dg.Config):
    min_group_size: int = Field(default=DEFAULT_MIN_GROUP_SIZE, description="k: a program × prefecture group is "
                                "published only with at least this many consented events (and ratings).")


# ---------------------------------------------------------------------------------------- assets

@dg.asset(name="testimonial_seo_snapshot", deps=["customer_success_events", "programs", "prefectures"],
          kinds={"sqlite", "parquet"}, **COMMON)
def testimonial_seo_snapshot(context: dg.AssetExecutionContext, config: SnapshotConfig,
                             autonomath_db: AutonomathDatabase) -> dg.MaterializeResult[pd.DataFrame]:
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
            (window.start_iso, window.end_iso)).fetchone()
        bad.extend(badrows.count_bad(conn, EVENT_RULES, "ts >= ? AND ts < ?", (window.start_iso, window.end_iso)))
    log_bad_rows(context, bad)
    snapshot = snapshot.assign(min_group_size=k)
    return dg.MaterializeResult(value=snapshot, metadata=frame_metadata(
        snapshot, ["program_id", "prefecture_code", "group_size", "adopted_count", "rating_value"],
        **window.metadata(), min_group_size=k, consented_events=int(consented),
        non_consented_events=int(not_consented), consented_groups=int(consented_group_count),
        groups_suppressed_below_k=int(consented_group_count) - len(snapshot),
        events_published=int(snapshot["group_size"].sum()) if len(snapshot) else 0, **bad_rows_metadata(bad)))


def yaml_scalar(value) -> str:
    """``value`` as one double-quoted YAML scalar on a single line."""
    text = "" if value is None else str(value)
    return yaml.safe_dump(text, allow_unicode=True, default_style='"', width=1_000_000_000).rstrip("\n")


@functools.cache
def template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.PackageLoader("autonomath_pipelines.lib", "templates"),
                             autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    # One double-quoted YAML scalar per value: front matter survives quotes, colons, '#', '---' and
    # control characters (escaped), and Japanese stays readable.
    env.filters["yaml_str"] = yaml_scalar
    # Every ASCII punctuation character backslash-escaped: a name can open no image, link or HTML.
    env.filters["inline"] = escape_inline
    return env.get_template(TEMPLATE)


def page_path(program_id: str, prefecture_code: str) -> str:
    return f"{PAGE_DIR}/case-{program_id}-{prefecture_code}.md"


def promotable(program_id: str, prefecture_code: str) -> bool:
    """Whether review can ever promote the group's page: its file name passes the same
    ``is_safe_file_name`` that promotion applies (``review/candidates.py``), so a name with ``/`` or
    ``..`` is never proposed only to be refused."""
    return is_safe_file_name(page_path(program_id, prefecture_code).removeprefix(f"{PAGE_DIR}/"))


def _yen(value) -> str | None:
    return None if value is None or pd.isna(value) else f"{int(value):,} 円"


def _month_label(window: Window) -> str:
    tz = ZoneInfo(TIMEZONE)
    first, last = window.start.astimezone(tz), (window.end - dt.timedelta(seconds=1)).astimezone(tz)
    label = f"{first.year}年{first.month}月"
    return label if (first.year, first.month) == (last.year, last.month) else f"{label}〜{last.year}年{last.month}月"


def render_page(group: dict, *, window: Window, min_group_size: int) -> tuple[str, str]:
    """The Markdown page and its JSON-LD text for one aggregate group (only facts, no customer text)."""
    document = build_jsonld(name=group["program_name"], provider=group["agency"], area=group["prefecture_name"],
                            category=group["category"], rating_value=group["rating_value"],
                            rating_count=int(group["rating_count"]))
    jsonld = dumps_jsonld(document)
    last_day = (window.end - dt.timedelta(seconds=1)).astimezone(ZoneInfo(TIMEZONE)).date()
    rate = group["adoption_rate"]
    markdown = template().render(
        title=f"{group['program_name']}の活用事例（{group['prefecture_name']}・{_month_label(window)}）",
        date=last_day.isoformat(), period=_month_label(window), min_group_size=min_group_size,
        program_id=group["program_id"], program_name=group["program_name"], agency=group["agency"],
        category=group["category"], prefecture_code=group["prefecture_code"],
        prefecture_name=group["prefecture_name"], group_size=int(group["group_size"]),
        adopted_count=int(group["adopted_count"]), applied_count=int(group["applied_count"]),
        not_adopted_count=int(group["not_adopted_count"]),
        adoption_rate_text="—" if rate is None or pd.isna(rate) else f"{100 * float(rate):.0f}%",
        amount_total_text=_yen(group["adopted_amount_total_jpy"]),
        amount_mean_text=_yen(group["adopted_amount_mean_jpy"]),
        rating_value=f"{float(group['rating_value']):.2f}", rating_count=int(group["rating_count"]),
        best_rating=BEST_RATING, worst_rating=WORST_RATING, jsonld=jsonld,
    )
    return markdown, jsonld


def front_matter(markdown: str) -> dict | None:
    """The page's YAML front matter as a mapping (None when absent or not a mapping)."""
    if not isinstance(markdown, str):
        return None
    head, _ = split_front_matter(markdown)
    if head is None:
        return None
    try:
        parsed = yaml.safe_load(head)
    except yaml.YAMLError:
        return None
    return parsed if isinstance(parsed, dict) else None


# ----------------------------------------------------------------------------------------- gates

def _consent_only(consented_counts: dict[tuple[str, str], int]):
    def evaluate(frame: pd.DataFrame) -> GateResult:
        bad = [(p, f, int(n), consented_counts.get((p, f), 0))
               for p, f, n in zip(frame["program_id"], frame["prefecture_code"], frame["group_size"])
               if consented_counts.get((p, f), 0) != int(n)] if len(frame) else []
        return GateResult(not bad, f"{len(bad)} groups whose size differs from their consented events in the database"
                          + (f": {bad[:3]}" if bad else ""), {"mismatched_groups": len(bad)})
    return evaluate


def _no_group_below_k(frame: pd.DataFrame) -> GateResult:
    if not len(frame):
        return GateResult(True, "0 groups below k", {"below_k": 0})
    small = frame[(frame["group_size"] < frame["min_group_size"]) | (frame["rating_count"] < frame["min_group_size"])
                  | (frame["min_group_size"] < 2)]
    return GateResult(small.empty, f"{len(small)} groups below k (smallest group {int(frame['group_size'].min())})",
                      {"below_k": len(small), "smallest_group": int(frame["group_size"].min())})


def _jsonld_valid(frame: pd.DataFrame) -> GateResult:
    bad = [(path, problems[0]) for path, text in zip(frame["page_path"], frame["jsonld"])
           if (problems := jsonld_problems(text))] if len(frame) else []
    return GateResult(not bad, f"{len(bad)} invalid JSON-LD blocks" + (f": {bad[:3]}" if bad else ""),
                      {"invalid": len(bad)})


def _markdown_renders(frame: pd.DataFrame) -> GateResult:
    bad = []
    for path, markdown, jsonld in (zip(frame["page_path"], frame["markdown"], frame["jsonld"]) if len(frame) else ()):
        meta = front_matter(markdown)
        if not isinstance(markdown, str) or not markdown.strip():
            bad.append((path, "empty page"))
        elif meta is None:
            bad.append((path, "front matter missing or not YAML"))
        elif not meta.get("title") or not meta.get("date"):
            bad.append((path, "front matter lacks title or date"))
        elif jsonld not in markdown:
            bad.append((path, "page does not embed its JSON-LD"))
    return GateResult(not bad, f"{len(bad)} pages that do not render" + (f": {bad[:3]}" if bad else ""),
                      {"broken": len(bad)})


#: A group whose every text is one inert word: the page it renders holds only the template's own markup.
_INERT_GROUP = {"program_id": "P0", "prefecture_code": "00", "program_name": "x", "agency": "x", "category": "x",
                "prefecture_name": "x", "group_size": 3, "adopted_count": 3, "applied_count": 0,
                "not_adopted_count": 0, "adoption_rate": 1.0, "adopted_amount_total_jpy": 3,
                "adopted_amount_mean_jpy": 1, "rating_value": 3.0, "rating_count": 3}
_INERT_WINDOW = Window(dt.datetime(2026, 9, 30, 15, tzinfo=dt.timezone.utc),
                       dt.datetime(2026, 10, 31, 15, tzinfo=dt.timezone.utc), ("2026-10-01",))


@functools.cache
def template_markup() -> Counter:
    """The images, links and HTML the template itself puts on a page (its JSON-LD ``<script>``), the
    most of each over both branches of the template (with and without adopted amounts)."""
    counts = Counter()
    for amount in (3, None):
        group = dict(_INERT_GROUP, adopted_amount_total_jpy=amount, adopted_amount_mean_jpy=amount)
        counts |= markup_counts(render_page(group, window=_INERT_WINDOW, min_group_size=3)[0])
    return counts


def _no_injected_markup(frame: pd.DataFrame) -> GateResult:
    allowed = template_markup()
    bad = [(path, describe_markup(extra)) for path, markdown in zip(frame["page_path"], frame["markdown"])
           if (extra := injected_markup(str(markdown), allowed))] if len(frame) else []
    return GateResult(not bad, f"{len(bad)} pages with images, links or raw HTML the template did not put there"
                      + (f": {bad[:3]}" if bad else ""), {"pages_with_injected_markup": len(bad)})


def _no_identifiers(api_keys: frozenset[str]):
    def evaluate(frame: pd.DataFrame) -> GateResult:
        text_columns = [c for c in ("markdown", "jsonld", "evidence_json", "page_path") if c in frame.columns]
        leaks = sum(1 for column in text_columns for text in frame[column]
                    if any(key in str(text) for key in api_keys)) if len(frame) else 0
        return GateResult(leaks == 0, f"{leaks} output fields containing a customer's api_key", {"leaks": leaks})
    return evaluate


def candidate_gates(consented_counts: dict[tuple[str, str], int], api_keys: frozenset[str]) -> tuple[Gate, ...]:
    return (
        gates.all_pending_review(),
        Gate("consented_events_only", "No non-consented event contributed: each group's size equals its consented "
             "events in the window, re-counted from the database at run time.", _consent_only(consented_counts)),
        Gate("no_group_below_k", "Every page aggregates at least k consented events (and k ratings).",
             _no_group_below_k),
        Gate("jsonld_valid", "Every JSON-LD block parses and has the properties search engines require "
             "(schema.org @context, @type, name, aggregateRating with itemReviewed, ratingValue within "
             "[worstRating, bestRating], ratingCount >= 1).", _jsonld_valid),
        Gate("markdown_renders", "Every page is non-empty, its front matter parses as YAML with title and date, "
             "and it embeds its JSON-LD.", _markdown_renders),
        Gate("no_injected_markup", "Every page, rendered with a CommonMark renderer (markdown-it-py), holds no "
             "image, link, autolink or raw HTML beyond the template's own (its JSON-LD script block).",
             _no_injected_markup),
        Gate("no_customer_identifiers", "No api_key of the window's events appears in any output field.",
             _no_identifiers(api_keys)),
        gates.non_empty_text("markdown"),
    )


def _run_reference(database: AutonomathDatabase, window: Window) -> tuple[dict[tuple[str, str], int], frozenset[str]]:
    """Consented events per group, and every api_key in the window, counted afresh from the database."""
    params = (window.start_iso, window.end_iso)
    with badrows.checked_connection(database.read_only) as conn:
        # The same well-formedness rules as the aggregate: the gate compares like with like. Keys
        # that do not decode cannot reach an output (every output text is valid UTF-8).
        counts = {(p, f): int(n) for p, f, n in badrows.checked_rows(
            conn, "SELECT program_id, prefecture_code, COUNT(*) FROM customer_success_events "
            f"WHERE consent_flag = 1 AND ts >= ? AND ts < ? AND {GOOD_EVENT} GROUP BY program_id, prefecture_code",
            params, table="customer_success_events")}
        keys = frozenset(k for (k,) in badrows.checked_rows(
            conn, "SELECT DISTINCT api_key FROM customer_success_events WHERE ts >= ? AND ts < ?", params,
            table="customer_success_events") if k)
    return counts, keys


CANDIDATE_COLUMNS = ["program_id", "prefecture_code", "page_path", "markdown", "jsonld", "group_size",
                     "evidence_json", "status", "created_at", "min_group_size", "rating_count", "program_name"]


@dg.asset(name="testimonial_seo_candidates", kinds={"jinja", "parquet"},
          check_specs=gate_specs("testimonial_seo_candidates", candidate_gates({}, frozenset())), **COMMON)
def testimonial_seo_candidates(context: dg.AssetExecutionContext, autonomath_db: AutonomathDatabase,
                               testimonial_seo_snapshot: pd.DataFrame):
    # No return annotation: with check_specs the op has several outputs.
    """One case page per group: Jinja Markdown (front matter + facts table) with an embedded schema.org
    JSON-LD block. Blocking gates: consented events only, no group below k, JSON-LD valid, Markdown renders,
    no image/link/HTML beyond the template's own, no customer identifier in the output. A group whose page
    path review could never promote is not proposed (counted in ``pages_skipped_unpromotable``)."""
    window = window_for(context, SPEC)
    created_at = iso_utc(utc_now())
    rows, unpromotable = [], []
    for group in testimonial_seo_snapshot.to_dict("records"):
        if not promotable(group["program_id"], group["prefecture_code"]):
            unpromotable.append(page_path(group["program_id"], group["prefecture_code"]))
            continue
        k = int(group["min_group_size"])
        markdown, jsonld = render_page(group, window=window, min_group_size=k)
        rows.append({
            "program_id": group["program_id"], "prefecture_code": group["prefecture_code"],
            "page_path": page_path(group["program_id"], group["prefecture_code"]),
            "markdown": markdown, "jsonld": jsonld, "group_size": int(group["group_size"]),
            "evidence_json": evidence_json(
                min_group_size=k, group_size=int(group["group_size"]), adopted=int(group["adopted_count"]),
                applied=int(group["applied_count"]), not_adopted=int(group["not_adopted_count"]),
                adoption_rate=None if pd.isna(group["adoption_rate"]) else round(float(group["adoption_rate"]), 4),
                adopted_with_amount=int(group["amount_count"]),
                **{key: None if pd.isna(group[key]) else int(group[key]) for key in (
                    "adopted_amount_total_jpy", "adopted_amount_mean_jpy", "adopted_amount_min_jpy",
                    "adopted_amount_max_jpy")},
                rating_value=float(group["rating_value"]), rating_count=int(group["rating_count"]),
                consented_comments=int(group["consented_comments"]), comments_published=0,
                window_start_utc=window.start_iso, window_end_utc=window.end_iso),
            "status": "pending_review", "created_at": created_at, "min_group_size": k,
            "rating_count": int(group["rating_count"]), "program_name": group["program_name"],
        })
    if unpromotable:
        context.log.warning(f"{len(unpromotable)} pages not proposed: their paths are not plain file names in "
                            f"{PAGE_DIR}/ and review could never promote them: {unpromotable[:5]}")
    candidates = pd.DataFrame(rows, columns=CANDIDATE_COLUMNS).assign(**provenance(context, SPEC, window))
    counts, api_keys = _run_reference(autonomath_db, window)
    run_gates = candidate_gates(counts, api_keys)
    return dg.MaterializeResult(
        value=candidates,
        metadata=frame_metadata(candidates, ["page_path", "program_name", "group_size", "rating_count"],
                                candidates_proposed=len(candidates), pages_skipped_unpromotable=len(unpromotable),
                                events_covered=int(candidates["group_size"].sum()) if len(candidates) else 0),
        check_results=gate_results("testimonial_seo_candidates", run_gates, candidates),
    )


@dg.asset(name="seo_testimonial_candidates_published", kinds={"sqlite"}, pool=DB_WRITE_POOL, **COMMON)
def seo_testimonial_candidates_published(context: dg.AssetExecutionContext, autonomath_db: AutonomathDatabase,
                                         loop_settings: LoopSettings,
                                         testimonial_seo_candidates: pd.DataFrame) -> dg.MaterializeResult:
    """`seo_testimonial_candidates` rows of this month, pending operator review (dry run: nothing written).

    Re-running replaces the month's still-pending pages; reviewed pages keep their status."""
    window = window_for(context, SPEC)
    plan = PublishPlan(table="seo_testimonial_candidates", rows=testimonial_seo_candidates,
                       key_columns=["partition_key", "program_id", "prefecture_code"],
                       stale_where="partition_key = ? AND status = 'pending_review'",
                       stale_params=(window.partition_key,))
    return publish(context, SPEC, loop_settings, autonomath_db, plan)


LOOP = LoopDefinition(
    spec=SPEC,
    assets=[testimonial_seo_snapshot, testimonial_seo_candidates, seo_testimonial_candidates_published],
    snapshot=testimonial_seo_snapshot.key,
    candidates=testimonial_seo_candidates.key,
    published=seo_testimonial_candidates_published.key,
)
