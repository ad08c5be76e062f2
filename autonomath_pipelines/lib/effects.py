"""Did promoting help? Before/after measurements for the scorecard.

- **Guard effect (loop A).** A promoted hallucination-guard pattern should make wrong answers on its
  theme rarer. For each applied promotion: among the queries that *match* its patterns (the
  normalized query contains the normalized pattern or the pattern contains the query), the
  wrong-answer feedback rate = matching wrong-answer ``customer_feedback`` rows / matching
  ``query_log`` rows, in the N days (default 14) before vs after ``promoted_at``. The after window is
  cut at the measurement time; with no matching traffic after the promotion yet there is nothing
  to compare (n/a, with the reason). Feedback and queries are counted separately, so a rate is a
  ratio of counts and not a probability: a text reported more often than asked gives a rate > 1.
- **Cache effect (loop H).** The share of the next day's requests the warmed cache can answer: for
  cache day d, the requests of JST day d+1 whose normalized-text hash is one of the cache's hashes
  for partition d. No traffic that day: nothing to report.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Collection, Iterable
from zoneinfo import ZoneInfo

import pandas as pd

from autonomath_pipelines.catalog import TIMEZONE
from autonomath_pipelines.lib.textnorm import normalize_query, query_hash

DEFAULT_EFFECT_DAYS = 14
_JST = ZoneInfo(TIMEZONE)


# ---------------------------------------------------------------------------------- guard effect


def guard_patterns(after_json: str | dict) -> tuple[str, ...]:
    """The normalized, non-empty patterns of a promotion's ``after_json`` rows (order kept, no duplicates)."""
    after = json.loads(after_json) if isinstance(after_json, str) else after_json
    rows = (after or {}).get("rows") or []
    patterns = (normalize_query(row["pattern"]) for row in rows if isinstance(row.get("pattern"), str))
    return tuple(dict.fromkeys(p for p in patterns if p))


def matches_patterns(texts: pd.Series, patterns: Iterable[str]) -> pd.Series:
    """Which raw query texts match any of the normalized ``patterns`` (containment either way)."""
    patterns = [p for p in patterns if p]
    normalized = texts.fillna("").astype(str).map(normalize_query)

    def matches(text: str) -> bool:
        return bool(text) and any(p in text or text in p for p in patterns)

    return normalized.map(matches).astype(bool)


@dataclass(frozen=True)
class PeriodCounts:
    queries: int
    wrong: int

    @property
    def rate(self) -> float | None:
        return self.wrong / self.queries if self.queries else None


@dataclass(frozen=True)
class GuardEffect:
    promotion_id: int
    promoted_at: dt.datetime
    patterns: tuple[str, ...]
    before: PeriodCounts
    after: PeriodCounts
    #: Days of the after window observed so far (≤ the effect window).
    after_days: float

    @property
    def reason(self) -> str | None:
        """Why there is no before/after comparison; None when there is one."""
        if not self.patterns:
            return "the promotion has no pattern"
        if self.after_days <= 0:
            return "no data after the promotion yet"
        if self.after.queries == 0:
            return "no matching queries after the promotion yet"
        return None

    @property
    def measured(self) -> bool:
        return self.reason is None


def effect_windows(
    promoted_at: dt.datetime, as_of: dt.datetime, days: int = DEFAULT_EFFECT_DAYS
) -> tuple[dt.datetime, dt.datetime, dt.datetime]:
    """``(before_start, promoted_at, after_end)``: N days either side, the after side cut at ``as_of``."""
    span = dt.timedelta(days=days)
    return promoted_at - span, promoted_at, max(promoted_at, min(promoted_at + span, as_of))


def _split_counts(frame: pd.DataFrame, patterns: tuple[str, ...]) -> tuple[int, int]:
    if frame.empty or not patterns:
        return 0, 0
    matched = frame[matches_patterns(frame["query_text"], patterns)]
    return int(matched["n_before"].sum()), int(matched["n_after"].sum())


def guard_effect(
    promotion_id: int,
    promoted_at: dt.datetime,
    patterns: tuple[str, ...],
    queries: pd.DataFrame,
    wrong: pd.DataFrame,
    after_days: float,
) -> GuardEffect:
    """The effect of one promotion from per-text counts (``query_text``, ``n_before``, ``n_after``) of
    ``query_log`` (``queries``) and of wrong-answer feedback (``wrong``) around ``promoted_at``."""
    q_before, q_after = _split_counts(queries, patterns)
    w_before, w_after = _split_counts(wrong, patterns)
    return GuardEffect(
        int(promotion_id),
        promoted_at,
        patterns,
        PeriodCounts(q_before, w_before),
        PeriodCounts(q_after, w_after),
        float(after_days),
    )


def pooled(effects: Iterable[GuardEffect]) -> tuple[PeriodCounts, PeriodCounts] | None:
    """Before/after counts summed over the measured promotions (None when none is measured)."""
    measured = [e for e in effects if e.measured]
    if not measured:
        return None
    return (
        PeriodCounts(sum(e.before.queries for e in measured), sum(e.before.wrong for e in measured)),
        PeriodCounts(sum(e.after.queries for e in measured), sum(e.after.wrong for e in measured)),
    )


# ---------------------------------------------------------------------------------- cache effect


@dataclass(frozen=True)
class CacheEffect:
    cache_day: str
    next_day: str
    requests: int
    served: int

    @property
    def share(self) -> float:
        return self.served / self.requests


def jst_day_bounds(day: str | dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The JST calendar day as ``[start, end)`` in UTC."""
    date = dt.date.fromisoformat(day) if isinstance(day, str) else day
    start = dt.datetime.combine(date, dt.time(), tzinfo=_JST)
    return start.astimezone(dt.timezone.utc), (start + dt.timedelta(days=1)).astimezone(dt.timezone.utc)


def cache_day_range(since: dt.datetime, until: dt.datetime) -> tuple[str, str]:
    """Cache days d whose next day d+1 lies inside ``[since, until)`` (JST days), as ``(first, last)``."""
    first_next = since.astimezone(_JST).date()
    if since.astimezone(_JST).time() != dt.time():
        first_next += dt.timedelta(days=1)  # a next day must lie wholly inside the window
    last_next = (until.astimezone(_JST) - dt.timedelta(days=1)).date()
    return (first_next - dt.timedelta(days=1)).isoformat(), (last_next - dt.timedelta(days=1)).isoformat()


def next_day(day: str) -> str:
    return (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()


def cache_effect(cache_day: str, requests: pd.DataFrame, cached_hashes: Collection[str]) -> CacheEffect | None:
    """Share of the next day's ``requests`` (``query_text``, ``requests``) the cache of ``cache_day``
    answers; None when that day has no traffic."""
    total = int(requests["requests"].sum()) if len(requests) else 0
    if total == 0:
        return None
    hashes = requests["query_text"].fillna("").astype(str).map(lambda text: query_hash(normalize_query(text)))
    served = int(requests.loc[hashes.isin(set(cached_hashes)), "requests"].sum())
    return CacheEffect(cache_day, next_day(cache_day), total, served)


def guard_markdown(effects: Iterable[GuardEffect]) -> list[str]:
    """One Markdown bullet per promotion: rates before → after, or n/a and why."""
    lines = []
    for effect in effects:
        head = (
            f"promotion {effect.promotion_id} ({effect.promoted_at:%Y-%m-%d %H:%M} UTC, "
            f"{len(effect.patterns)} pattern(s))"
        )
        if not effect.measured:
            lines.append(f"- {head}: n/a — {effect.reason}")
            continue
        lines.append(
            f"- {head}: wrong-answer rate {_rate_text(effect.before)} → {_rate_text(effect.after)} "
            f"(after window {effect.after_days:.1f} days so far)"
        )
    return lines


def _rate_text(counts: PeriodCounts) -> str:
    rate = "n/a" if counts.rate is None else f"{counts.rate:.3f}"
    return f"{rate} ({counts.wrong}/{counts.queries})"
