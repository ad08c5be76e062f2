"""Loop B's case pages: one Markdown page per consented program × prefecture group, and its gates.

A page holds only the service's own facts and counts (no customer text, no identifier): the
template ``case_study.md.j2`` with YAML front matter and an embedded schema.org JSON-LD block
(``lib/jsonld.py``). Every value interpolated into the body is backslash-escaped
(``lib/markdown_safety.py``), and the ``no_injected_markup`` gate re-renders each page with
markdown-it-py: a page holding an image, link, autolink or raw HTML beyond the template's own is
refused. The gates are pure predicates over the candidate frame (``lib/gates.py``).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import Counter
from typing import NamedTuple
from zoneinfo import ZoneInfo

import pandas as pd
import yaml

from autonomath_pipelines.contract.timestamps import iso_utc
from autonomath_pipelines.lib import gates
from autonomath_pipelines.lib.evidence import evidence_json
from autonomath_pipelines.lib.files import is_safe_file_name
from autonomath_pipelines.lib.gates import Gate, GateResult
from autonomath_pipelines.lib.jsonld import BEST_RATING, WORST_RATING, build_jsonld, dumps_jsonld, jsonld_problems
from autonomath_pipelines.lib.markdown_safety import (
    describe_markup,
    escape_inline,
    injected_markup,
    markup_counts,
    split_front_matter,
)
from autonomath_pipelines.lib.templating import template

TEMPLATE = "case_study.md.j2"
TIMEZONE = ZoneInfo("Asia/Tokyo")


class Period(NamedTuple):
    """The [start, end) a page reports on (a loop's read window has the same two fields)."""

    start: dt.datetime
    end: dt.datetime


def yaml_scalar(value) -> str:
    """``value`` as one double-quoted YAML scalar on a single line."""
    text = "" if value is None else str(value)
    return yaml.safe_dump(text, allow_unicode=True, default_style='"', width=1_000_000_000).rstrip("\n")


def page_template():
    # One double-quoted YAML scalar per value: front matter survives quotes, colons, '#', '---' and
    # control characters (escaped), and Japanese stays readable. Every ASCII punctuation character
    # in the body backslash-escaped: a name can open no image, link or HTML.
    return template(TEMPLATE, yaml_str=yaml_scalar, inline=escape_inline)


def page_path(page_dir: str, program_id: str, prefecture_code: str) -> str:
    return f"{page_dir}/case-{program_id}-{prefecture_code}.md"


def promotable(page_dir: str, program_id: str, prefecture_code: str) -> bool:
    """Whether review can ever promote the group's page: its file name passes the same
    ``is_safe_file_name`` that promotion applies (``review/candidates.py``), so a name with ``/`` or
    ``..`` is never proposed only to be refused."""
    return is_safe_file_name(page_path(page_dir, program_id, prefecture_code).removeprefix(f"{page_dir}/"))


def _yen(value) -> str | None:
    return None if value is None or pd.isna(value) else f"{int(value):,} 円"


def month_label(period: Period) -> str:
    """``2026年10月``, or ``2026年10月〜2026年11月`` for a period over several JST months."""
    first, last = period.start.astimezone(TIMEZONE), (period.end - dt.timedelta(seconds=1)).astimezone(TIMEZONE)
    label = f"{first.year}年{first.month}月"
    return label if (first.year, first.month) == (last.year, last.month) else f"{label}〜{last.year}年{last.month}月"


def render_page(group: dict, *, window: Period, min_group_size: int) -> tuple[str, str]:
    """The Markdown page and its JSON-LD text for one aggregate group (only facts, no customer text)."""
    document = build_jsonld(
        name=group["program_name"],
        provider=group["agency"],
        area=group["prefecture_name"],
        category=group["category"],
        rating_value=group["rating_value"],
        rating_count=int(group["rating_count"]),
    )
    jsonld = dumps_jsonld(document)
    last_day = (window.end - dt.timedelta(seconds=1)).astimezone(TIMEZONE).date()
    rate = group["adoption_rate"]
    markdown = page_template().render(
        title=f"{group['program_name']}の活用事例（{group['prefecture_name']}・{month_label(window)}）",
        date=last_day.isoformat(),
        period=month_label(window),
        min_group_size=min_group_size,
        program_id=group["program_id"],
        program_name=group["program_name"],
        agency=group["agency"],
        category=group["category"],
        prefecture_code=group["prefecture_code"],
        prefecture_name=group["prefecture_name"],
        group_size=int(group["group_size"]),
        adopted_count=int(group["adopted_count"]),
        applied_count=int(group["applied_count"]),
        not_adopted_count=int(group["not_adopted_count"]),
        adoption_rate_text="—" if rate is None or pd.isna(rate) else f"{100 * float(rate):.0f}%",
        amount_total_text=_yen(group["adopted_amount_total_jpy"]),
        amount_mean_text=_yen(group["adopted_amount_mean_jpy"]),
        rating_value=f"{float(group['rating_value']):.2f}",
        rating_count=int(group["rating_count"]),
        best_rating=BEST_RATING,
        worst_rating=WORST_RATING,
        jsonld=jsonld,
    )
    return markdown, jsonld


def page_candidate(group: dict, *, window: Period, page_dir: str) -> dict:
    """The candidate row of one group: its page, JSON-LD and evidence (the counts behind the page, and
    how many consented comments were left out), pending review."""
    k = int(group["min_group_size"])
    markdown, jsonld = render_page(group, window=window, min_group_size=k)
    optional = {
        key: None if pd.isna(group[key]) else int(group[key])
        for key in (
            "adopted_amount_total_jpy",
            "adopted_amount_mean_jpy",
            "adopted_amount_min_jpy",
            "adopted_amount_max_jpy",
        )
    }
    return {
        "program_id": group["program_id"],
        "prefecture_code": group["prefecture_code"],
        "page_path": page_path(page_dir, group["program_id"], group["prefecture_code"]),
        "markdown": markdown,
        "jsonld": jsonld,
        "group_size": int(group["group_size"]),
        "evidence_json": evidence_json(
            min_group_size=k,
            group_size=int(group["group_size"]),
            adopted=int(group["adopted_count"]),
            applied=int(group["applied_count"]),
            not_adopted=int(group["not_adopted_count"]),
            adoption_rate=None if pd.isna(group["adoption_rate"]) else round(float(group["adoption_rate"]), 4),
            adopted_with_amount=int(group["amount_count"]),
            **optional,
            rating_value=float(group["rating_value"]),
            rating_count=int(group["rating_count"]),
            consented_comments=int(group["consented_comments"]),
            comments_published=0,
            window_start_utc=iso_utc(window.start),
            window_end_utc=iso_utc(window.end),
        ),
        "status": "pending_review",
        "min_group_size": k,
        "rating_count": int(group["rating_count"]),
        "program_name": group["program_name"],
    }


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


def consent_only(consented_counts: dict[tuple[str, str], int]):
    def evaluate(frame: pd.DataFrame) -> GateResult:
        bad = (
            [
                (p, f, int(n), consented_counts.get((p, f), 0))
                for p, f, n in zip(frame["program_id"], frame["prefecture_code"], frame["group_size"])
                if consented_counts.get((p, f), 0) != int(n)
            ]
            if len(frame)
            else []
        )
        return GateResult(
            not bad,
            f"{len(bad)} groups whose size differs from their consented events in the database"
            + (f": {bad[:3]}" if bad else ""),
            {"mismatched_groups": len(bad)},
        )

    return evaluate


def no_group_below_k(frame: pd.DataFrame) -> GateResult:
    if not len(frame):
        return GateResult(True, "0 groups below k", {"below_k": 0})
    small = frame[
        (frame["group_size"] < frame["min_group_size"])
        | (frame["rating_count"] < frame["min_group_size"])
        | (frame["min_group_size"] < 2)
    ]
    return GateResult(
        small.empty,
        f"{len(small)} groups below k (smallest group {int(frame['group_size'].min())})",
        {"below_k": len(small), "smallest_group": int(frame["group_size"].min())},
    )


def jsonld_valid(frame: pd.DataFrame) -> GateResult:
    bad = (
        [
            (path, problems[0])
            for path, text in zip(frame["page_path"], frame["jsonld"])
            if (problems := jsonld_problems(text))
        ]
        if len(frame)
        else []
    )
    return GateResult(
        not bad, f"{len(bad)} invalid JSON-LD blocks" + (f": {bad[:3]}" if bad else ""), {"invalid": len(bad)}
    )


def markdown_renders(frame: pd.DataFrame) -> GateResult:
    bad = []
    for path, markdown, jsonld in zip(frame["page_path"], frame["markdown"], frame["jsonld"]) if len(frame) else ():
        meta = front_matter(markdown)
        if not isinstance(markdown, str) or not markdown.strip():
            bad.append((path, "empty page"))
        elif meta is None:
            bad.append((path, "front matter missing or not YAML"))
        elif not meta.get("title") or not meta.get("date"):
            bad.append((path, "front matter lacks title or date"))
        elif jsonld not in markdown:
            bad.append((path, "page does not embed its JSON-LD"))
    return GateResult(
        not bad, f"{len(bad)} pages that do not render" + (f": {bad[:3]}" if bad else ""), {"broken": len(bad)}
    )


#: A group whose every text is one inert word: the page it renders holds only the template's own markup.
_INERT_GROUP = {
    "program_id": "P0",
    "prefecture_code": "00",
    "program_name": "x",
    "agency": "x",
    "category": "x",
    "prefecture_name": "x",
    "group_size": 3,
    "adopted_count": 3,
    "applied_count": 0,
    "not_adopted_count": 0,
    "adoption_rate": 1.0,
    "adopted_amount_total_jpy": 3,
    "adopted_amount_mean_jpy": 1,
    "rating_value": 3.0,
    "rating_count": 3,
}
_INERT_PERIOD = Period(
    dt.datetime(2026, 9, 30, 15, tzinfo=dt.timezone.utc), dt.datetime(2026, 10, 31, 15, tzinfo=dt.timezone.utc)
)


@functools.cache
def template_markup() -> Counter:
    """The images, links and HTML the template itself puts on a page (its JSON-LD ``<script>``), the
    most of each over both branches of the template (with and without adopted amounts)."""
    counts = Counter()
    for amount in (3, None):
        group = dict(_INERT_GROUP, adopted_amount_total_jpy=amount, adopted_amount_mean_jpy=amount)
        counts |= markup_counts(render_page(group, window=_INERT_PERIOD, min_group_size=3)[0])
    return counts


def no_injected_markup(frame: pd.DataFrame) -> GateResult:
    allowed = template_markup()
    bad = (
        [
            (path, describe_markup(extra))
            for path, markdown in zip(frame["page_path"], frame["markdown"])
            if (extra := injected_markup(str(markdown), allowed))
        ]
        if len(frame)
        else []
    )
    return GateResult(
        not bad,
        f"{len(bad)} pages with images, links or raw HTML the template did not put there"
        + (f": {bad[:3]}" if bad else ""),
        {"pages_with_injected_markup": len(bad)},
    )


def no_identifiers(api_keys: frozenset[str]):
    def evaluate(frame: pd.DataFrame) -> GateResult:
        text_columns = [c for c in ("markdown", "jsonld", "evidence_json", "page_path") if c in frame.columns]
        leaks = (
            sum(1 for column in text_columns for text in frame[column] if any(key in str(text) for key in api_keys))
            if len(frame)
            else 0
        )
        return GateResult(leaks == 0, f"{leaks} output fields containing a customer's api_key", {"leaks": leaks})

    return evaluate


def candidate_gates(consented_counts: dict[tuple[str, str], int], api_keys: frozenset[str]) -> tuple[Gate, ...]:
    """Loop B's blocking gates, given the consented events per group and the window's api_keys
    counted afresh from the database at run time."""
    return (
        gates.all_pending_review(),
        Gate(
            "consented_events_only",
            "No non-consented event contributed: each group's size equals its consented "
            "events in the window, re-counted from the database at run time.",
            consent_only(consented_counts),
        ),
        Gate(
            "no_group_below_k", "Every page aggregates at least k consented events (and k ratings).", no_group_below_k
        ),
        Gate(
            "jsonld_valid",
            "Every JSON-LD block parses and has the properties search engines require "
            "(schema.org @context, @type, name, aggregateRating with itemReviewed, ratingValue within "
            "[worstRating, bestRating], ratingCount >= 1).",
            jsonld_valid,
        ),
        Gate(
            "markdown_renders",
            "Every page is non-empty, its front matter parses as YAML with title and date, and it embeds its JSON-LD.",
            markdown_renders,
        ),
        Gate(
            "no_injected_markup",
            "Every page, rendered with a CommonMark renderer (markdown-it-py), holds no "
            "image, link, autolink or raw HTML beyond the template's own (its JSON-LD script block).",
            no_injected_markup,
        ),
        Gate(
            "no_customer_identifiers",
            "No api_key of the window's events appears in any output field.",
            no_identifiers(api_keys),
        ),
        gates.non_empty_text("markdown"),
    )
